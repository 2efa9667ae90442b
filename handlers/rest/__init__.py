"""REST routes (aiohttp)."""
