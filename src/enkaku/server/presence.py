"""Which agents are online, and a way to send them control messages.

One interface, two backends: in-process (one node, the default) and Redis (several nodes,
a separate issue). The in-process backend holds the agent's control connection itself.
"""

from __future__ import annotations

from typing import Any, Protocol


class AgentLink(Protocol):
    """The server's end of one agent's control WebSocket."""

    agent_id: str

    async def send(self, message: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Presence(Protocol):
    async def register(self, link: AgentLink) -> AgentLink | None:
        """Mark the agent online; returns the link it replaces, if any."""
        ...

    async def unregister(self, link: AgentLink) -> None: ...

    async def is_online(self, agent_id: str) -> bool: ...

    async def send(self, agent_id: str, message: dict[str, Any]) -> bool:
        """Deliver a control message; False when the agent is not online."""
        ...

    async def online_count(self) -> int: ...

    async def online_ids(self) -> set[str]:
        """The IDs of every agent online now."""
        ...


class MemoryPresence:
    """Presence for a single server process."""

    def __init__(self) -> None:
        self._links: dict[str, AgentLink] = {}

    async def register(self, link: AgentLink) -> AgentLink | None:
        old = self._links.get(link.agent_id)
        self._links[link.agent_id] = link
        return old if old is not link else None

    async def unregister(self, link: AgentLink) -> None:
        if self._links.get(link.agent_id) is link:
            del self._links[link.agent_id]

    async def is_online(self, agent_id: str) -> bool:
        return agent_id in self._links

    async def send(self, agent_id: str, message: dict[str, Any]) -> bool:
        link = self._links.get(agent_id)
        if link is None:
            return False
        try:
            await link.send(message)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def online_count(self) -> int:
        return len(self._links)

    async def online_ids(self) -> set[str]:
        return set(self._links)

    def links(self) -> list[AgentLink]:
        return list(self._links.values())
