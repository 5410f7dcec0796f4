"""steerdiff-timeseries."""
