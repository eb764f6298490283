"""The server's collaborators, built once at the composition root (app.py)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .agents import AgentGateway
from .presence import Presence
from .ratelimit import FailureDelay
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
    #: Failed handshakes per technician and per agent ID (slows session requests).
    failures: FailureDelay
    #: Failed logins per user name and per client address.
    login_failures: FailureDelay


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
