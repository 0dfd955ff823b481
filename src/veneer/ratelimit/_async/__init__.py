"""The asyncio rate limiter (the source of ``_sync``)."""
