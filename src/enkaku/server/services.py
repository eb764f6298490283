"""The server's collaborators, built once at the composition root (app.py)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .agents import AgentGateway
from .presence import Presence
from .ratelimit import Limits
from .relay import RelayHub
from .settings import Settings
from .store.repo import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    presence: Presence
    relay: RelayHub
    agents: AgentGateway
    #: Login and session-request slow-downs, lockouts and caps (ratelimit.py).
    limits: Limits


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
