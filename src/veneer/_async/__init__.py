"""The asyncio shell: the source the sync shell is generated from."""
