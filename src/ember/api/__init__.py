"""The HTTP edge: Lambda REST API 2015-03-31, parsed into commands; AWS-shaped errors out."""
