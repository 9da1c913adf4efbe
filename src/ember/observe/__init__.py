"""Observability: function and platform log lines, the log writer (metrics come later)."""
