"""Which screen backend serves this session: X11, or a Wayland compositor's own API.

``auto`` looks at the session: an explicit ``--display`` means X11; a Wayland socket
($WAYLAND_DISPLAY) means Wayland: on GNOME ($XDG_CURRENT_DESKTOP) mutter's
remote-desktop API on the session bus serves it, else the compositor's advertised
globals say whether the wlroots backend can, else the desktop portal (KDE and
others); else $DISPLAY means X11; with neither
there is no screen to serve. On a Wayland session no backend can serve, the agent stops with a
message naming what was tried and what to do, in both languages — never falling back
to XWayland, whose root window shows only the X clients, not the desktop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from enkaku.i18n import register

from .capture.base import ScreenCapture
from .clipboard import Clipboard
from .input.base import InputInjector

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "x11", "wayland-wlroots", "wayland-gnome", "wayland-portal")

# What the wlroots backend binds (screencopy 2+ for damage).
WLROOTS_GLOBALS = (
    "zwlr_screencopy_manager_v1",
    "zwp_virtual_keyboard_manager_v1",
    "zwlr_virtual_pointer_manager_v1",
)
#: The clipboard protocols (standard, and wlroots' own) of wlroots compositors and KDE's
#: KWin: the clipboard of the wlroots backend, and of the portal backend where offered.
DATA_CONTROL = ("ext_data_control_manager_v1", "zwlr_data_control_manager_v1")

register(
    {
        "backend_none": (
            "enkaku agent: this desktop's screen cannot be shared ({desktop}).\n"
            "Tried: {tried}.\n"
            'What to do: log in to an "X11" (Xorg) session from the login screen\'s '
            "session menu, or use a wlroots desktop (sway, Hyprland, river, labwc, "
            "Wayfire), or a desktop with the screen-sharing portal (wayland-portal: "
            "xdg-desktop-portal with the desktop's backend, e.g. xdg-desktop-portal-kde); "
            "{install}",
            "enkaku agent: このデスクトップ ({desktop}) の画面は共有できません。\n"
            "試したもの: {tried}\n"
            "対処: ログイン画面のセッション選択で「X11」(Xorg) セッションにログインするか、"
            "wlroots 系のデスクトップ (sway, Hyprland, river, labwc, Wayfire)、または"
            "画面共有ポータルのあるデスクトップ (wayland-portal: xdg-desktop-portal と"
            "デスクトップ用のバックエンド、例: xdg-desktop-portal-kde) を使ってください。"
            "{install}",
        ),
        "backend_install_pywayland": (
            "the Wayland support needs the Python package pywayland "
            "(pip install pywayland) and libwayland-client0.",
            "Wayland 対応には Python パッケージ pywayland (pip install pywayland) と "
            "libwayland-client0 が必要です。",
        ),
        "backend_install_gnome": (
            "the GNOME support needs the Python package dbus-fast "
            "(pip install 'enkaku[wayland]'), GStreamer with its PipeWire plugin "
            "(Debian/Ubuntu: gstreamer1.0-pipewire gstreamer1.0-plugins-base; Fedora: "
            "pipewire-gstreamer gstreamer1-plugins-base) and PipeWire running in the session.",
            "GNOME 対応には Python パッケージ dbus-fast (pip install 'enkaku[wayland]')、"
            "GStreamer とその PipeWire プラグイン (Debian/Ubuntu: gstreamer1.0-pipewire "
            "gstreamer1.0-plugins-base、Fedora: pipewire-gstreamer gstreamer1-plugins-base)、"
            "およびセッションで動作中の PipeWire が必要です。",
        ),
        "backend_tried_gnome": (
            "wayland-gnome ({error})",
            "wayland-gnome ({error})",
        ),
        "backend_install_portal": (
            "the portal support needs xdg-desktop-portal with the desktop's backend "
            "(KDE: xdg-desktop-portal-kde), the Python package dbus-fast "
            "(pip install 'enkaku[wayland]') and GStreamer with its PipeWire plugin "
            "(Debian/Ubuntu: gstreamer1.0-pipewire gstreamer1.0-plugins-base; Fedora: "
            "pipewire-gstreamer gstreamer1-plugins-base).",
            "ポータル対応には xdg-desktop-portal とデスクトップ用のバックエンド "
            "(KDE: xdg-desktop-portal-kde)、Python パッケージ dbus-fast "
            "(pip install 'enkaku[wayland]')、GStreamer とその PipeWire プラグイン "
            "(Debian/Ubuntu: gstreamer1.0-pipewire gstreamer1.0-plugins-base、Fedora: "
            "pipewire-gstreamer gstreamer1-plugins-base) が必要です。",
        ),
        "backend_tried_portal": (
            "wayland-portal ({error})",
            "wayland-portal ({error})",
        ),
        "backend_install_none": (
            "nothing to install helps on this desktop yet.",
            "このデスクトップでは、いまのところ追加インストールでは解決しません。",
        ),
        "backend_tried_wlroots_missing": (
            "wayland-wlroots (the compositor lacks {missing})",
            "wayland-wlroots (コンポジタに {missing} がありません)",
        ),
        "backend_tried_wlroots_error": (
            "wayland-wlroots ({error})",
            "wayland-wlroots ({error})",
        ),
        "backend_tried_x11": (
            "x11 (no X display: $DISPLAY is not set)",
            "x11 (X ディスプレイがありません: $DISPLAY が未設定)",
        ),
    }
)


Factories = tuple[
    Callable[[], ScreenCapture] | None,
    Callable[[], InputInjector] | None,
    Callable[[], Clipboard] | None,
]


@dataclass
class NoBackend(Exception):
    """No backend can serve this session; ``message(lang)`` says why and what to do."""

    desktop: str
    tried: list[tuple[str, dict[str, str]]]  # message key, its arguments
    install_key: str

    def message(self, lang: str) -> str:
        from enkaku.i18n import t

        sep = "、" if lang == "ja" else "; "
        tried = sep.join(t(key, lang, **kw) for key, kw in self.tried)
        return t(
            "backend_none", lang, desktop=self.desktop, tried=tried,
            install=t(self.install_key, lang),
        )  # fmt: skip


def _desktop(env: dict[str, str] | os._Environ[str]) -> str:
    kind = "Wayland" if env.get("WAYLAND_DISPLAY") else "X11" if env.get("DISPLAY") else "-"
    return f"{env.get('XDG_CURRENT_DESKTOP') or '?'}, {kind}"


def _x11(display: str) -> Factories:
    logger.info("screen backend: x11 (%s)", display)
    from .capture.x11 import X11Capture
    from .clipboard.x11 import X11Clipboard
    from .input.x11 import X11Input

    return (
        (lambda: X11Capture(display)),
        (lambda: X11Input(display)),
        (lambda: X11Clipboard(display)),
    )


def _probe_wlroots(wayland_display: str | None) -> tuple[str, dict[str, str]] | None:
    """None when the wlroots backend can serve, else why not (a ``tried`` entry)."""
    try:
        from .wayland.connection import WaylandConnection, WaylandUnavailable
    except ImportError:
        return ("backend_tried_wlroots_error", {"error": "pywayland is not installed"})
    try:
        conn = WaylandConnection(wayland_display)
    except WaylandUnavailable as exc:
        return ("backend_tried_wlroots_error", {"error": str(exc)})
    try:
        missing = [name for name in WLROOTS_GLOBALS if not conn.has(name)]
    finally:
        conn.close()
    if missing:
        return ("backend_tried_wlroots_missing", {"missing": ", ".join(missing)})
    return None


def _is_gnome(env: dict[str, str] | os._Environ[str]) -> bool:
    """A GNOME session ("GNOME", "ubuntu:GNOME", "GNOME-Classic:GNOME")."""
    desktops = (env.get("XDG_CURRENT_DESKTOP") or "").upper().split(":")
    return "GNOME" in desktops


def _probe_gnome(env: dict[str, str] | os._Environ[str]) -> tuple[str, dict[str, str]] | None:
    """None when mutter's remote-desktop backend can serve, else why not."""
    from .gnome.mutter import probe

    why = probe(env)
    return None if why is None else ("backend_tried_gnome", {"error": why})


def _gnome_install_helps(why: tuple[str, dict[str, str]]) -> bool:
    error = why[1].get("error", "")
    return "dbus-fast" in error or "GStreamer" in error


def _gnome(env: dict[str, str] | os._Environ[str]) -> Factories:
    logger.info("screen backend: wayland-gnome (%s)", env.get("WAYLAND_DISPLAY"))
    from .capture.gnome import GnomeCapture
    from .clipboard.gnome import GnomeClipboard
    from .input.gnome import GnomeInput

    session = {k: v for k, v in env.items() if k in _GNOME_ENV}
    return (
        (lambda: GnomeCapture(session)),
        (lambda: GnomeInput(session)),
        (lambda: GnomeClipboard(session)),
    )


_GNOME_ENV = ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "PIPEWIRE_REMOTE", "WAYLAND_DISPLAY")


def _probe_portal(env: dict[str, str] | os._Environ[str]) -> tuple[str, dict[str, str]] | None:
    """None when the desktop portal's screen cast and remote desktop can serve."""
    from .portal.session import probe

    why = probe(env)
    return None if why is None else ("backend_tried_portal", {"error": why})


def _portal(env: dict[str, str] | os._Environ[str], config_dir: Path | None) -> Factories:
    logger.info("screen backend: wayland-portal (%s)", env.get("WAYLAND_DISPLAY"))
    from .capture.portal import PortalCapture
    from .input.portal import PortalInput

    session = {k: v for k, v in env.items() if k in _GNOME_ENV}
    return (
        (lambda: PortalCapture(session, config_dir)),
        (lambda: PortalInput(session, config_dir)),
        # Not through the portal (its Clipboard interface needs RemoteDesktop version
        # 2): through data control where the compositor offers it (KDE's KWin does).
        _data_control_clipboard(env.get("WAYLAND_DISPLAY")),
    )


def _offers(wayland_display: str | None, interfaces: tuple[str, ...]) -> bool:
    """Whether the compositor announces one of ``interfaces`` (False when it cannot be
    asked)."""
    try:
        from .wayland.connection import WaylandConnection, WaylandUnavailable
    except ImportError:
        return False
    try:
        conn = WaylandConnection(wayland_display)
    except WaylandUnavailable:
        return False
    try:
        return any(conn.has(name) for name in interfaces)
    finally:
        conn.close()


def _data_control_clipboard(wayland_display: str | None) -> Callable[[], Clipboard] | None:
    """The clipboard through data control, or None where the compositor offers neither
    protocol (said in the log)."""
    if not _offers(wayland_display, DATA_CONTROL):
        logger.info("the compositor offers no %s: no clipboard", " or ".join(DATA_CONTROL))
        return None
    from .clipboard.wlroots import WlrootsClipboard

    return lambda: WlrootsClipboard(wayland_display)


def _wlroots(wayland_display: str | None) -> Factories:
    logger.info("screen backend: wayland-wlroots (%s)", wayland_display)
    from .capture.wlroots import WlrootsCapture
    from .input.wlroots import WlrootsInput

    return (
        (lambda: WlrootsCapture(wayland_display)),
        (lambda: WlrootsInput(wayland_display)),
        _data_control_clipboard(wayland_display),
    )


def select_backend(
    backend: str,
    display: str | None,
    env: dict[str, str] | os._Environ[str] = os.environ,
    config_dir: Path | None = None,
) -> Factories:
    """Capture, input and clipboard factories for this session (None: no screen).

    ``display`` is ``--display`` (an X display, or "none"); ``config_dir`` the agent's
    config folder (the portal's restore token is kept there). Raises :class:`NoBackend`.
    """
    if display is not None and display.lower() == "none":
        return None, None, None
    wayland_display = env.get("WAYLAND_DISPLAY")
    x_display = display or env.get("DISPLAY")
    if backend == "x11" or (backend == "auto" and display):
        if not x_display:
            raise NoBackend(_desktop(env), [("backend_tried_x11", {})], "backend_install_none")
        return _x11(x_display)
    tried: list[tuple[str, dict[str, str]]] = []
    install = "backend_install_none"
    if backend == "wayland-gnome" or (backend == "auto" and wayland_display and _is_gnome(env)):
        why = _probe_gnome(env)
        if why is None:
            return _gnome(env)
        tried.append(why)
        if _gnome_install_helps(why):
            install = "backend_install_gnome"
        if backend == "wayland-gnome":
            raise NoBackend(_desktop(env), tried, install)
    if backend == "wayland-wlroots" or (backend == "auto" and wayland_display):
        why = _probe_wlroots(wayland_display)
        if why is None:
            return _wlroots(wayland_display)
        tried.append(why)
        if why[1].get("error") == "pywayland is not installed" and not tried[:-1]:
            install = "backend_install_pywayland"
        if backend == "wayland-wlroots":
            raise NoBackend(_desktop(env), tried, install)
    if backend == "wayland-portal" or (backend == "auto" and wayland_display):
        why = _probe_portal(env)
        if why is None:
            return _portal(env, config_dir)
        tried.append(why)
        if install == "backend_install_none":
            install = "backend_install_portal"
        raise NoBackend(_desktop(env), tried, install)
    if x_display:
        return _x11(x_display)
    return None, None, None
