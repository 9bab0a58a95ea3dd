"""Helpers for tests that run the real programs: the service, the worker and a private Redis."""
