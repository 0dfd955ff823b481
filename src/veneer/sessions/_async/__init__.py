"""The asyncio session store: the source of the generated ``_sync`` twin."""
