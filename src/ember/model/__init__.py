"""Pure data: function configurations, code identities, invocation records. No I/O."""
