"""An XKB keymap built from the keysyms the technician typed (as ``wtype`` does).

Each keysym gets a key of its own, one level, so what the viewer sent is what every
client reads, whatever the customer's layout (JIS, US, AZERTY, ...) and for any
keysym or Unicode character. Modifier keysyms get the modifier they stand for.
Keycodes stay stable while the map grows, so a key held across a keymap change is
released on the right key.
"""

from __future__ import annotations

FIRST_KEYCODE = 9  # XKB keycode; the Wayland key code sent is this minus 8
MAX_KEYS = 240  # XKB keycodes up to 255: clients through XWayland see no more
# The keycodes section's name: xkbcommon keeps it when a compositor passes the keymap
# on, so the agent knows its own keymap in the seat's (``b'xkb_keycodes "enkaku"'``).
KEYMAP_NAME = b'xkb_keycodes "enkaku"'

# The real modifier each modifier keysym sets (keysymdef.h values).
MODIFIER_OF: dict[int, str] = {
    0xFFE1: "Shift",  # Shift_L
    0xFFE2: "Shift",  # Shift_R
    0xFFE3: "Control",  # Control_L
    0xFFE4: "Control",  # Control_R
    0xFFE5: "Lock",  # Caps_Lock
    0xFFE7: "Mod1",  # Meta_L
    0xFFE8: "Mod1",  # Meta_R
    0xFFE9: "Mod1",  # Alt_L
    0xFFEA: "Mod1",  # Alt_R
    0xFFEB: "Mod4",  # Super_L
    0xFFEC: "Mod4",  # Super_R
    0xFE03: "Mod5",  # ISO_Level3_Shift (AltGr)
    0xFF7F: "Mod2",  # Num_Lock
}


class KeysymKeymap:
    """Keysym → keycode assignments and the keymap text that declares them."""

    def __init__(self) -> None:
        self._codes: dict[int, int] = {}  # keysym -> XKB keycode

    def __len__(self) -> int:
        return len(self._codes)

    def keycode(self, keysym: int) -> int | None:
        return self._codes.get(keysym)

    def add(self, keysym: int, keep: set[int] = frozenset()) -> int:  # type: ignore[assignment]
        """The keycode of ``keysym``, assigning one if needed. When the map is full it
        starts again, keeping the keysyms in ``keep`` (those held down) on their keys."""
        code = self._codes.get(keysym)
        if code is not None:
            return code
        if len(self._codes) >= MAX_KEYS:
            self._codes = {k: c for k, c in self._codes.items() if k in keep}
        used = set(self._codes.values())
        code = next(c for c in range(FIRST_KEYCODE, FIRST_KEYCODE + MAX_KEYS + 1) if c not in used)
        self._codes[keysym] = code
        return code

    def text(self) -> str:
        """The keymap in XKB text format (keysyms written as numbers: no name table)."""
        codes = sorted(self._codes.items(), key=lambda kv: kv[1])
        top = max((c for _, c in codes), default=FIRST_KEYCODE)
        lines = [
            "xkb_keymap {",
            f'xkb_keycodes "enkaku" {{ minimum = 8; maximum = {max(top, 255)};',
        ]
        lines += [f"  <K{c}> = {c};" for _, c in codes]
        lines += [
            "};",
            'xkb_types "enkaku" { include "complete" };',
            'xkb_compatibility "enkaku" { include "complete" };',
            'xkb_symbols "enkaku" {',
        ]
        lines += [f"  key <K{c}> {{ [ {keysym:#x} ] }};" for keysym, c in codes]
        for keysym, c in codes:
            if keysym in MODIFIER_OF:
                lines.append(f"  modifier_map {MODIFIER_OF[keysym]} {{ <K{c}> }};")
        lines += ["};", "};", ""]
        return "\n".join(lines)
