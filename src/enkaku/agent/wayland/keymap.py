"""An XKB keymap of keysyms, one key each (as ``wtype`` builds, but preloaded).

Each keysym gets a key of its own, one level, so what the viewer sent is what every
client reads, whatever the customer's layout (JIS, US, AZERTY, ...) and for any
keysym or Unicode character. Modifier keysyms get the modifier they stand for.

Letters are the exception: ``a`` and ``A`` share one key of two levels (type
``ALPHABETIC``), as on a real keyboard. Shortcuts need it: a viewer sends Ctrl+Shift+V
as Shift, Control and the keysym ``V``, and applications (foot's paste, a browser's
Ctrl+Shift+T) match the key's first-level ``v`` with Shift held; a key whose only
level is ``V`` matches nothing. ``shifted()`` tells the injector which level the
viewer's keysym is, and the injector states Shift for that key accordingly.

The map starts with the ordinary keys (:data:`PRESET`: printable ASCII, editing and
function keys, modifiers, common JIS keys), so ordinary typing never changes it: a
new keymap costs the compositor and the focused client a compile each (3-8 ms per
first press on headless sway). Other keysyms are added on demand. Keycodes stay
stable while the map grows, so a key held across a keymap change is released on the
right key.
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


#: Upper-case letter keysym -> the lower-case keysym whose key it is the second level of.
UPPER_OF_LETTER: dict[int, int] = {up: up + 0x20 for up in range(0x41, 0x5B)}


def _preset() -> tuple[int, ...]:
    # Printable ASCII (keysym = code point); capitals are the second level of their letter.
    keys = [k for k in range(0x20, 0x7F) if k not in UPPER_OF_LETTER]
    keys += [
        0xFF0D, 0xFF08, 0xFF09, 0xFF1B, 0xFFFF,  # Return BackSpace Tab Escape Delete
        0xFF51, 0xFF52, 0xFF53, 0xFF54,  # Left Up Right Down
        0xFF50, 0xFF57, 0xFF55, 0xFF56, 0xFF63,  # Home End Prior Next Insert
        0xFF61, 0xFF67, 0xFF13, 0xFF14, 0xFE20,  # Print Menu Pause Scroll_Lock ISO_Left_Tab
        0xFF8D,  # KP_Enter
    ]  # fmt: skip
    keys += range(0xFFBE, 0xFFBE + 12)  # F1-F12
    keys += MODIFIER_OF
    keys += [
        0xA5, 0x47E,  # yen, overline (JIS)
        0xFF21, 0xFF22, 0xFF23, 0xFF24, 0xFF25, 0xFF26, 0xFF27,  # Kanji Muhenkan Henkan
        0xFF28, 0xFF29, 0xFF2A, 0xFF2B, 0xFF2C, 0xFF2D, 0xFF2E, 0xFF2F, 0xFF30,  # ... Eisu
        0x4A1, 0x4A2, 0x4A3, 0x4A4, 0x4A5, 0x4B0,  # kana punctuation, prolonged sound mark
    ]  # fmt: skip
    return tuple(dict.fromkeys(keys))


#: The keysyms every keymap holds, on keycodes FIRST_KEYCODE.. in this order.
PRESET: tuple[int, ...] = _preset()


class KeysymKeymap:
    """Keysym → keycode assignments and the keymap text that declares them."""

    def __init__(self) -> None:
        # keysym -> XKB keycode; the preset keysyms keep their keys for good
        self._codes: dict[int, int] = {k: FIRST_KEYCODE + i for i, k in enumerate(PRESET)}
        #: Counts the changes: a keymap sent at one version need not be built again.
        self.version = 0

    def __len__(self) -> int:
        """Keys in use (a letter's two levels are one key)."""
        return len(self._codes)

    def keycode(self, keysym: int) -> int | None:
        return self._codes.get(UPPER_OF_LETTER.get(keysym, keysym))

    @staticmethod
    def shifted(keysym: int) -> bool | None:
        """For a letter, whether ``keysym`` is its second level (the capital); None for
        a key of one level."""
        if keysym in UPPER_OF_LETTER:
            return True
        if 0x61 <= keysym <= 0x7A:
            return False
        return None

    def add(self, keysym: int, keep: set[int] = frozenset()) -> int:  # type: ignore[assignment]
        """The keycode of ``keysym``, assigning one if needed. When the map is full it
        starts again from :data:`PRESET`, keeping the keysyms in ``keep`` (those held
        down) on their keys."""
        code = self.keycode(keysym)  # letters, capitals among them, are preset
        if code is not None:
            return code
        if len(self._codes) >= MAX_KEYS:
            preset = set(PRESET)
            self._codes = {k: c for k, c in self._codes.items() if k in keep or k in preset}
        used = set(self._codes.values())
        code = next(c for c in range(FIRST_KEYCODE, FIRST_KEYCODE + MAX_KEYS + 1) if c not in used)
        self._codes[keysym] = code
        self.version += 1
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
        for keysym, c in codes:
            if self.shifted(keysym) is False:  # a letter: its capital on the second level
                upper = keysym - 0x20
                lines.append(
                    f'  key <K{c}> {{ type = "ALPHABETIC", [ {keysym:#x}, {upper:#x} ] }};'
                )
            else:
                lines.append(f"  key <K{c}> {{ [ {keysym:#x} ] }};")
        for keysym, c in codes:
            if keysym in MODIFIER_OF:
                lines.append(f"  modifier_map {MODIFIER_OF[keysym]} {{ <K{c}> }};")
        lines += ["};", "};", ""]
        return "\n".join(lines)
