"""Async adapters shared by the agent and the technician client: relay legs and the
end-to-end channel (handshake, records, streams) over them."""
