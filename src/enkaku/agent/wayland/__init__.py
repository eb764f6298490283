"""Wayland helpers for the agent: protocol definitions, connection, keymaps.

The client library is ``pywayland`` (libwayland-client through cffi); the wlroots
protocols it does not ship are described in :mod:`.protocols`.
"""
