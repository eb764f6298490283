"""Connecting to a Wayland compositor and binding the globals the agent needs."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from pywayland.client import Display
from pywayland.protocol.wayland import WlRegistry, WlSeat, WlShm
from pywayland.protocol_core import Interface

__all__ = ["Global", "WaylandConnection", "WaylandUnavailable", "socket_path"]


class WaylandUnavailable(RuntimeError):
    """No compositor to talk to, or it lacks a protocol the agent needs."""


@dataclass
class Global:
    name: int
    interface: str
    version: int


def socket_path(display: str | None) -> str | None:
    """The compositor socket ``display`` (or $WAYLAND_DISPLAY) names, if it exists."""
    name = display or os.environ.get("WAYLAND_DISPLAY")
    if not name:
        return None
    if os.path.isabs(name):
        return name if os.path.exists(name) else None
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        return None
    path = os.path.join(runtime, name)
    return path if os.path.exists(path) else None


def _record_global(
    found: dict[str, list[Global]], _registry: WlRegistry, name: int, interface: str, version: int
) -> None:
    found.setdefault(interface, []).append(Global(name, interface, version))


class WaylandConnection:
    """A client connection with the registry read once (globals by interface name)."""

    def __init__(self, display: str | None = None) -> None:
        path = socket_path(display)
        if path is None:
            shown = display or os.environ.get("WAYLAND_DISPLAY") or "$WAYLAND_DISPLAY"
            raise WaylandUnavailable(f"no Wayland compositor socket {shown!r}")
        self.name = path
        self.display = Display(path)
        try:
            self.display.connect()
        except Exception as exc:  # pywayland raises ValueError
            raise WaylandUnavailable(f"cannot connect to Wayland display {path!r}: {exc}") from exc
        self.globals: dict[str, list[Global]] = {}
        self.registry = self.display.get_registry()
        # Not a bound method: the registry must not keep this object alive (a cycle
        # kept closed connections' proxies around until the garbage collector ran, and
        # pywayland hands objects the compositor creates to the first live registry's
        # display).
        self.registry.dispatcher["global"] = functools.partial(_record_global, self.globals)
        self.registry.dispatcher["global_remove"] = lambda *_: None
        self.display.roundtrip()

    def _on_global(self, registry: WlRegistry, name: int, interface: str, version: int) -> None:
        """A global announced later (for a tracker that took over the registry's events)."""
        _record_global(self.globals, registry, name, interface, version)

    def has(self, interface: str) -> bool:
        return interface in self.globals

    def bind(self, interface: type[Interface], max_version: int, index: int = 0) -> Any:
        found = self.globals.get(interface.name)
        if not found or index >= len(found):
            raise WaylandUnavailable(
                f"the compositor does not offer {interface.name} (not a wlroots compositor?)"
            )
        g = found[index]
        return self.registry.bind(g.name, interface, min(g.version, max_version))

    def version_of(self, interface: type[Interface]) -> int:
        found = self.globals.get(interface.name)
        return found[0].version if found else 0

    def shm(self) -> Any:
        return self.bind(WlShm, 1)

    def seat(self) -> Any:
        return self.bind(WlSeat, 1)

    def close(self) -> None:
        """Destroy every proxy, then disconnect (idempotent)."""
        self.display.disconnect()

    def __del__(self) -> None:
        # pywayland frees proxies and the display in whatever order the garbage
        # collector picks; a proxy freed after its display crashes the process. A
        # connection dropped without close() is closed here, proxies first (finalizers
        # run before the collector breaks the cycles).
        display = getattr(self, "display", None)
        if display is not None:
            display.disconnect()
