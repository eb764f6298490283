"""The stream kinds this agent serves (docs/protocol/services.md)."""

from __future__ import annotations

from . import Registry


def default_registry() -> Registry:
    from . import screen

    registry = Registry()
    for spec in (screen.SPEC,):
        registry.add(spec)
    return registry
