"""The Backend Secrets API: an aiohttp app that stores encrypted values and publishes changes."""
