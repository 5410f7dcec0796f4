"""steerdiff-policy."""
