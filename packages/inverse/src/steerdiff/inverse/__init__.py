"""steerdiff-inverse."""
