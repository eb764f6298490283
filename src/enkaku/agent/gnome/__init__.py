"""GNOME on Wayland: mutter's remote-desktop D-Bus API and PipeWire frames
(docs/wayland.md)."""
