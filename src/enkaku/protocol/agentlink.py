"""Constants of the agent control connection (/ws/agent) that the server and the agent
share. The message flow is in docs/protocol/agent-control.md."""

from __future__ import annotations

#: The agent proves its device key by signing this prefix followed by the server's nonce.
AUTH_CONTEXT = b"enkaku/1 agent-auth\x00"

#: The version of this link the server announces in ``challenge``; an agent that speaks
#: another one stops and tells the customer where to get the current agent.
PROTOCOL = 1

#: The largest ``hello`` the server reads (a real one is about 300 bytes).
MAX_HELLO = 2048

#: Close codes of the control connection.
CLOSE_MALFORMED = 4400
CLOSE_UNAUTHORIZED = 4401
#: The key is new and its address registered too many new agent IDs lately; retry later.
CLOSE_RATE_LIMITED = 4429
#: The agent's ``hello`` names a link protocol this server does not speak: the agent stops
#: and tells the customer to download the current one (retrying cannot help).
CLOSE_INCOMPATIBLE = 4426
#: The same device key connected again; the older connection is closed and its agent stops.
CLOSE_REPLACED = 4009
