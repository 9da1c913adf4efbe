"""Built-in runtime clients (stdlib only, run inside sandboxes) and the runtime catalogue."""
