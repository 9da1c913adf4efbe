"""State and code blobs: the store port, its SQLite implementation, the blob store."""
