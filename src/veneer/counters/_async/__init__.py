"""The asyncio shell of counters (the source of ``veneer.counters._sync``)."""
