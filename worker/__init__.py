"""The engine side: listens for changes, caches snapshots, resolves secrets inside executions."""
