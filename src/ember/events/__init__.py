"""Event sources: the built-in SQS-compatible queue service and event source mappings."""
