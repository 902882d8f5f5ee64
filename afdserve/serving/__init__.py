"""Server-independent serving logic: batches of request bodies in, JSON-ready answers out."""
