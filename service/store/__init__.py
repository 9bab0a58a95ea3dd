"""SQLite persistence: one writer connection that commits in batches, one reader connection."""
