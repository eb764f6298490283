"""The agent's session services: what each stream kind serves and the consent it needs.

A technician asks for an action with a control ``request``; the agent asks its
customer through the consent policy and answers. A granted answer is a ``Grant``. The
technician then opens a stream of a kind the registry knows, naming the grant in the
stream's ``grant`` parameter; the agent checks the grant, then runs the kind's ``serve``.
Session actions (``control.SESSION_ACTIONS``) stay granted until withdrawn; the others
are consumed by the one stream they were granted for, whose parameters must repeat what
the customer saw (``ServiceSpec.bound``). An unknown kind, a missing or spent grant, or
parameters that differ are refused with a stream RESET (docs/protocol/services.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from enkaku.agent.capture.base import ScreenCapture
    from enkaku.agent.clipboard import Clipboard
    from enkaku.agent.consent import Requester
    from enkaku.agent.input.base import InputInjector
    from enkaku.transport.channel import Stream

#: RESET reasons of the registry (the service's own reasons are listed in its module).
RESET_UNKNOWN_KIND = "unsupported_stream"
RESET_NO_GRANT = "consent_required"


#: What a service tells the customer's own screen as it works, on the loop: ``("transfer",
#: {"id", "state": start|progress|done|failed, "direction": receive|send, "name", "size",
#: "done"})`` and ``("screenshot", {"width", "height"})``. Shown locally only (file names
#: included), never sent to the server.
Activity = Callable[[str, dict[str, Any]], None]


def no_activity(kind: str, info: dict[str, Any]) -> None:
    """The default: a UI that shows no activity."""


@dataclass(frozen=True)
class Grant:
    """One ``answer`` that allowed an action: what the customer saw and said yes to."""

    id: int
    action: str
    details: Mapping[str, str | int | bool]
    purpose: str | None = None


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds, monotonic."""
        ...


class Reporter(Protocol):
    async def __call__(self, event: str, detail: str | None = None) -> None:
        """Send the server a metadata audit event about this session (never content:
        no file names, bytes, chat text or keystrokes)."""
        ...


@dataclass(frozen=True)
class FileSettings:
    """Where files from the technician go, and how long an interrupted one is kept."""

    #: The default destination folder (the customer sees it in the question).
    incoming: Path = field(default_factory=lambda: Path.home() / "Downloads")
    #: An interrupted transfer's verified part is kept this long for resumption.
    partial_ttl: float = 24 * 3600.0


@dataclass
class ServiceContext:
    """What a service may use. Built by the agent session for each stream."""

    session_id: str
    agent_id: str
    who: Requester
    grant: Grant
    report: Reporter
    files: FileSettings
    capture_factory: Callable[[], ScreenCapture] | None = None
    input_factory: Callable[[], InputInjector] | None = None
    clipboard_factory: Callable[[], Clipboard] | None = None
    #: Whether a session grant is still in force (the customer may withdraw it).
    allowed: Callable[[str], bool] = lambda action: True
    clock: Clock | None = None
    activity: Activity = no_activity


Serve = Callable[["Stream", ServiceContext], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    """One stream kind: the action whose grant it needs and the coroutine that serves it."""

    kind: str
    action: str
    serve: Serve
    #: Stream parameters that must equal the grant's details (for actions asked each
    #: time: the file the customer allowed is the file that is sent).
    bound: tuple[str, ...] = ()


class Registry:
    """Stream kinds the agent serves."""

    def __init__(self) -> None:
        self._specs: dict[str, ServiceSpec] = {}

    def add(self, spec: ServiceSpec) -> None:
        if spec.kind in self._specs:
            raise ValueError(f"stream kind {spec.kind!r} registered twice")
        self._specs[spec.kind] = spec

    def get(self, kind: str) -> ServiceSpec | None:
        return self._specs.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._specs)


def bound_params_match(spec: ServiceSpec, params: Mapping[str, Any], grant: Grant) -> bool:
    """Whether the stream's parameters repeat what the customer allowed."""
    return all(params.get(name) == grant.details.get(name) for name in spec.bound)
