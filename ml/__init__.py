"""How Contrail scores: pure numpy computation (the batcher is the only asyncio-aware piece)."""
