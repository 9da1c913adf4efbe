"""The data plane: invoker, placement, execution environments (sync invoke for now)."""
