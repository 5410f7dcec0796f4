"""steerdiff-music."""
