"""What the customer has allowed in one session, and what a stream may use of it.

Session actions (screen, control, system information, browsing, clipboard, terminal)
stay granted until the customer withdraws them. The others (a screenshot, one file each
way) are granted for one stream: the stream names the grant in its ``grant`` parameter,
repeats the details the customer saw, and spends it. Nothing outlives the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from enkaku.protocol.control import SESSION_ACTIONS

from .services import Grant, ServiceSpec, bound_params_match


class Grants:
    def __init__(self) -> None:
        self._session: dict[str, Grant] = {}
        self._once: dict[int, Grant] = {}

    def add(self, grant: Grant) -> None:
        if grant.action in SESSION_ACTIONS:
            self._session[grant.action] = grant
        else:
            self._once[grant.id] = grant

    def allowed(self, action: str) -> bool:
        """Whether a session action is in force now."""
        return action in self._session

    def withdraw(self, action: str) -> bool:
        """The customer takes a session action back; True if it was granted."""
        return self._session.pop(action, None) is not None

    def in_force(self) -> list[str]:
        """The session actions granted now, sorted (for ``status``)."""
        return sorted(self._session)

    def take(self, spec: ServiceSpec, params: Mapping[str, Any]) -> Grant | None:
        """The grant a stream of ``spec`` may use, or None (refused).

        A session action needs only to be in force. A one-time action needs the grant the
        stream names, for this action, with the same bound details; it is spent here.
        """
        if spec.action in SESSION_ACTIONS:
            return self._session.get(spec.action)
        gid = params.get("grant")
        if not isinstance(gid, int) or isinstance(gid, bool):
            return None
        grant = self._once.get(gid)
        if grant is None or grant.action != spec.action:
            return None
        if not bound_params_match(spec, params, grant):
            return None
        del self._once[gid]
        return grant

    def clear(self) -> None:
        self._session.clear()
        self._once.clear()
