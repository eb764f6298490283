"""The compositor's outputs (monitors) and where each is in the desktop.

``OutputTracker`` binds every ``wl_output`` (also those plugged later) and, when the
compositor offers ``zxdg_output_manager_v1``, its ``zxdg_output_v1``: the output's
logical position and size in the global compositor space, which is what the pointer's
absolute motion and other clients use. Without xdg-output the position comes from
``wl_output.geometry`` and the size from the current mode, divided by the integer scale
and turned by the transform. The tracker calls ``on_change`` after each atomic update
(``wl_output.done``, or ``zxdg_output_v1.done`` on old versions) and after a removal
(``wl_registry.global_remove``: a monitor unplugged).

Not seen: an output disabled on sway 1.7 / wlroots 0.15 (``swaymsg output X disable``)
keeps its ``wl_output`` global and sends no event at all (not even xdg-output or
wlr-output-management, which reports every headless output as disabled there). wlroots
0.17 and later advertise a ``wl_output`` only while the output is in the layout, so
there a disabled output is seen as removed (not tried here: the tests have sway 1.7).

All of it runs on the thread that dispatches the connection's events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pywayland.protocol.wayland import WlOutput, WlRegistry
from pywayland.protocol.xdg_output_unstable_v1 import ZxdgOutputManagerV1

from enkaku.protocol.geometry import Rect

from .connection import Global, WaylandConnection

__all__ = ["Output", "OutputTracker", "bounding_box"]

_ODD_TRANSFORMS = {1, 3, 5, 7}  # 90 and 270 degrees, flipped or not: width <-> height


@dataclass(eq=False)
class Output:
    """One output as the compositor last described it."""

    global_name: int
    proxy: Any
    xdg: Any = None
    name: str = ""
    mode: tuple[int, int] = (0, 0)  # the current mode, in the output's own pixels
    scale: int = 1
    transform: int = 0
    position: tuple[int, int] = (0, 0)  # wl_output.geometry's x, y
    logical_position: tuple[int, int] | None = None  # xdg-output's
    logical_size: tuple[int, int] | None = None
    ready: bool = False  # described once (a first ``done``)
    version: int = 1  # the wl_output version bound

    @property
    def rect(self) -> Rect:
        """Where the output is in the global compositor space (logical pixels)."""
        x, y = self.logical_position or self.position
        if self.logical_size is not None and min(self.logical_size) > 0:
            w, h = self.logical_size
        else:
            w, h = self.mode
            if self.transform in _ODD_TRANSFORMS:
                w, h = h, w
            scale = max(self.scale, 1)
            w, h = w // scale, h // scale
        return Rect(x, y, max(w, 0), max(h, 0))


def bounding_box(rects: list[Rect]) -> Rect | None:
    """The smallest rectangle holding every non-empty rectangle; None when there is none."""
    box: Rect | None = None
    for r in rects:
        if r.w <= 0 or r.h <= 0:
            continue
        box = r if box is None else box.union(r)
    return box


class OutputTracker:
    """Every output of ``conn``'s compositor, kept up to date (see the module doc).
    ``only``: track just the output of that name (the others are bound, then ignored)."""

    def __init__(
        self,
        conn: WaylandConnection,
        on_change: Callable[[], None] = lambda: None,
        only: str | None = None,
    ) -> None:
        self._conn = conn
        self._on_change = on_change
        self._only = only
        self._outputs: dict[int, Output] = {}
        self._xdg_manager: Any = None
        self._xdg_version = min(conn.version_of(ZxdgOutputManagerV1), 3)
        if self._xdg_version:
            self._xdg_manager = conn.bind(ZxdgOutputManagerV1, 3)
        registry = conn.registry
        registry.dispatcher["global"] = self._on_global
        registry.dispatcher["global_remove"] = self._on_global_remove
        for g in list(conn.globals.get(WlOutput.name, [])):
            self._add(g)

    # -- events ---------------------------------------------------------------------

    def _on_global(self, registry: WlRegistry, name: int, interface: str, version: int) -> None:
        self._conn._on_global(registry, name, interface, version)
        if interface == WlOutput.name:
            self._add(Global(name, interface, version))

    def _on_global_remove(self, _registry: WlRegistry, name: int) -> None:
        for found in self._conn.globals.values():
            found[:] = [g for g in found if g.name != name]
        out = self._outputs.pop(name, None)
        if out is None:
            return
        with contextlib.suppress(Exception):  # the connection may be going down
            if out.xdg is not None:
                out.xdg.destroy()
            if out.version >= 3:
                out.proxy.release()
            else:
                out.proxy._destroy()
        if out.ready:
            self._on_change()

    def _add(self, g: Global) -> None:
        version = min(g.version, 4)
        proxy = self._conn.registry.bind(g.name, WlOutput, version)
        out = Output(g.name, proxy, version=version)
        self._outputs[g.name] = out

        def on_geometry(_o: Any, x: int, y: int, *rest: Any) -> None:
            out.position = (x, y)
            out.transform = int(rest[-1])

        def on_mode(_o: Any, flags: int, w: int, h: int, _refresh: int) -> None:
            if flags & 1:  # current
                out.mode = (w, h)
                if version < 2:  # no done event: each mode ends an update
                    on_done(_o)

        def on_scale(_o: Any, factor: int) -> None:
            out.scale = factor

        def on_name(_o: Any, name: str) -> None:
            out.name = name

        def on_done(_o: Any) -> None:
            out.ready = True
            self._on_change()

        proxy.dispatcher["geometry"] = on_geometry
        proxy.dispatcher["mode"] = on_mode
        proxy.dispatcher["scale"] = on_scale
        proxy.dispatcher["name"] = on_name
        proxy.dispatcher["done"] = on_done
        if self._xdg_manager is not None:
            xdg = self._xdg_manager.get_xdg_output(proxy)
            out.xdg = xdg

            def on_position(_x: Any, x: int, y: int) -> None:
                out.logical_position = (x, y)

            def on_size(_x: Any, w: int, h: int) -> None:
                out.logical_size = (w, h)

            def on_xdg_name(_x: Any, name: str) -> None:
                out.name = out.name or name

            xdg.dispatcher["logical_position"] = on_position
            xdg.dispatcher["logical_size"] = on_size
            xdg.dispatcher["name"] = on_xdg_name
            if self._xdg_version < 3:  # then xdg_output.done ends an update
                xdg.dispatcher["done"] = lambda _x: on_done(None) if out.ready else None

    # -- queries --------------------------------------------------------------------

    def outputs(self) -> list[Output]:
        """The described outputs with an area (and the name asked for, if any)."""
        found = []
        for out in self._outputs.values():
            if not out.ready or out.rect.w <= 0 or out.rect.h <= 0:
                continue
            if self._only is not None and out.name != self._only:
                continue
            found.append(out)
        return found

    def pending(self) -> bool:
        """Whether an output was announced and not described yet (a round trip tells)."""
        return any(not out.ready for out in self._outputs.values())

    def names(self) -> list[str]:
        return [out.name or "?" for out in self._outputs.values()]

    def box(self) -> Rect | None:
        """The outputs' bounding box in the global compositor space."""
        return bounding_box([out.rect for out in self.outputs()])

    def close(self) -> None:
        """Destroy the proxies (before the connection is closed)."""
        with contextlib.suppress(Exception):
            for out in self._outputs.values():
                if out.xdg is not None:
                    out.xdg.destroy()
            if self._xdg_manager is not None:
                self._xdg_manager.destroy()
        self._outputs.clear()
        self._xdg_manager = None
