"""The ``ember`` command. ``serve`` starts the server; every other command is an HTTP client."""
