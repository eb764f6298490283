"""Wire formats and state machines of enkaku. Nothing here does IO or imports asyncio."""
