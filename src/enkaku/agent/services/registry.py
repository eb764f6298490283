"""The stream kinds this agent serves (docs/protocol/services.md).

The service modules are imported here, lazily, so that importing the session does not
pull in PIL, numpy or psutil before a session needs them.
"""

from __future__ import annotations

from . import Registry


def default_registry(server_url: str | None = None) -> Registry:
    """Every service: the screen, screenshots, files (put, get, browse), the system
    information report (measured against ``server_url``, the agent's server), the
    terminal and typing a text."""
    from enkaku.agent.sysinfo import service as sysinfo

    from . import files, screen, screenshot, terminal, typetext

    registry = Registry()
    for spec in (
        screen.SPEC,
        screenshot.SPEC,
        *files.SPECS,
        sysinfo.spec_for(server_url),
        terminal.SPEC,
        typetext.SPEC,
    ):
        registry.add(spec)
    return registry
