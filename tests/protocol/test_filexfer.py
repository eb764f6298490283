"""The file-transfer wire format: name rules, parameters, message lines, listings."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkaku.i18n import CATALOG
from enkaku.protocol import filexfer as fx

SHA = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("report.pdf", None),
        (".bashrc", None),
        ("見積書 2024.xlsx", None),
        ("a" * 255, None),
        ("あ" * 85, None),  # 255 bytes
        ("あ" * 85 + "a", "name_too_long"),
        ("", "name_empty"),
        ("a/b", "name_separator"),
        ("a\\b", "name_separator"),
        ("/etc/passwd", "name_separator"),
        ("../x", "name_separator"),
        (".", "name_dots"),
        ("..", "name_dots"),
        ("a\x00", "name_control"),
        ("line\nbreak", "name_control"),
        ("esc\x1b[31m", "name_control"),
        ("del\x7f", "name_control"),
        ("c1\x85", "name_control"),
        ("rlo\u202egpj.exe", "name_control"),
        ("zero\u200bwidth", "name_control"),
        ("sep\u2028", "name_control"),
        ("lone\udc80", "name_control"),
        (".enkaku-abc.part", "name_reserved"),
        ("CON", None),  # fine on POSIX
        ("what?", None),
    ],
)
def test_check_name_posix(name: str, reason: str | None) -> None:
    assert fx.check_name(name, "posix") == reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("CON", "name_reserved"),
        ("con", "name_reserved"),
        ("Nul.txt", "name_reserved"),
        ("aux.tar.gz", "name_reserved"),
        ("COM9", "name_reserved"),
        ("LPT1 .txt", "name_reserved"),
        ("COM¹", "name_reserved"),
        ("CONSOLE", None),
        ("COM0", None),
        ("a<b", "name_bad_char"),
        ('say"hi"', "name_bad_char"),
        ("pipe|", "name_bad_char"),
        ("star*", "name_bad_char"),
        ("c:x", "name_bad_char"),
        ("end.", "name_trailing"),
        ("end ", "name_trailing"),
        ("fine.txt", None),
    ],
)
def test_check_name_windows(name: str, reason: str | None) -> None:
    assert fx.check_name(name, "windows") == reason


@given(st.text(max_size=300))
def test_accepted_names_are_single_safe_components(name: str) -> None:
    if fx.check_name(name, "posix") is None:
        assert "/" not in name and name not in (".", "..") and "\x00" not in name
        assert 0 < len(name.encode()) <= 255


def test_every_reason_has_both_languages() -> None:
    for reason in fx.REASONS:
        en, ja = CATALOG[f"files_err_{reason}"]
        assert en and ja and en != ja
        assert fx.message(reason, "en") == en and fx.message(reason, "ja") == ja
        assert reason.isascii() and len(reason) <= 64
    assert "weird_thing" in fx.message("weird_thing\x1b", "en")
    assert "\x1b" not in fx.message("weird_thing\x1b", "en")


def test_put_params() -> None:
    good = {"grant": 3, "name": "a.txt", "size": 10, "sha256": SHA, "dest": "", "overwrite": False}
    assert fx.parse_put(good) == fx.PutParams("a.txt", 10, SHA, "", False)
    assert fx.parse_put({**good, "dest": "/home/u"}).dest == "/home/u"
    bad_fields: list[dict[str, Any]] = [
        {"size": -1},
        {"size": True},
        {"size": "10"},
        {"size": fx.MAX_SIZE + 1},
        {"sha256": SHA.upper()},
        {"sha256": SHA[:-1]},
        {"overwrite": 1},
        {"name": 5},
        {"dest": 7},
    ]
    for bad in bad_fields:
        with pytest.raises(fx.Refused) as err:
            fx.parse_put({**good, **bad})
        assert err.value.reason == "bad_params", bad
    for dest in ("relative", "/a\x00b"):
        with pytest.raises(fx.Refused) as err:
            fx.parse_put({**good, "dest": dest})
        assert err.value.reason == "bad_path"


def test_get_and_browse_params() -> None:
    assert fx.parse_get({"path": "/a", "offset": 5, "sha256": SHA}) == fx.GetParams("/a", 5, SHA)
    assert fx.parse_get({"path": "/a"}) == fx.GetParams("/a", 0, None)
    with pytest.raises(fx.Refused, match="bad_path"):
        fx.parse_get({"path": "a"})
    with pytest.raises(fx.Refused, match="bad_params"):
        fx.parse_get({"path": "/a", "offset": -1})
    assert fx.parse_browse({}) == "" and fx.parse_browse({"path": "/x"}) == "/x"
    with pytest.raises(fx.Refused, match="bad_path"):
        fx.parse_browse({"path": "~/x"})


def test_header_round_trip_and_any_split() -> None:
    header = fx.GetHeader("ログ.txt", 100, SHA, 40, 1700000000.5)
    wire = header.encode() + b"DATA"
    assert wire.count(b"\n") == 1
    for cut in range(len(wire) + 1):
        reader = fx.LineReader()
        first = reader.feed(wire[:cut])
        unread = wire[cut:] if first is not None else b""
        got = first if first is not None else reader.feed(wire[cut:])
        assert got is not None
        obj, rest = got
        assert fx.GetHeader.parse(obj) == header
        assert rest + unread == b"DATA"  # file bytes after the line are never lost


def test_line_reader_refuses_long_or_bad_lines() -> None:
    with pytest.raises(fx.Refused):
        fx.LineReader().feed(b"x" * (fx.MAX_LINE + 1))
    with pytest.raises(fx.Refused):
        fx.LineReader().feed(b"[1]\n")
    with pytest.raises(fx.Refused):
        fx.LineReader().feed(b"{" * 100 + b"\n")
    assert fx.LineReader().feed(b'{"offset":') is None


@pytest.mark.parametrize(
    "obj",
    [
        {"name": "a", "size": 5, "sha256": SHA, "offset": 6, "mtime": 0},  # offset > size
        {"name": "a", "size": 5, "sha256": "nope", "offset": 0, "mtime": 0},
        {"name": "a", "size": 5, "sha256": SHA, "offset": 0, "mtime": "now"},
        {"size": 5, "sha256": SHA, "offset": 0, "mtime": 0},
    ],
)
def test_bad_headers(obj: dict[str, object]) -> None:
    with pytest.raises(fx.Refused, match="bad_params"):
        fx.GetHeader.parse(obj)


def test_parse_offset() -> None:
    assert fx.parse_offset({"offset": 3}, 10) == 3
    for bad in (11, -1, "3", None):
        with pytest.raises(fx.Refused):
            fx.parse_offset({"offset": bad}, 10)


def test_listing() -> None:
    entry = {"name": "a", "type": "file", "size": 1, "mtime": 2}
    data = json.dumps({"path": "/h", "entries": [entry], "truncated": False}).encode()
    assert fx.parse_listing(data) == ("/h", [{**entry, "mtime": 2.0}], False)
    for bad in [
        {"path": "/h", "entries": [{**entry, "type": "socket"}], "truncated": False},
        {"path": "/h", "entries": [{**entry, "size": -1}], "truncated": False},
        {"path": "/h", "entries": "x", "truncated": False},
        {"path": "/h", "entries": [], "truncated": "no"},
        {"path": "/h", "entries": [entry] * (fx.MAX_ENTRIES + 1), "truncated": True},
    ]:
        with pytest.raises(fx.Refused):
            fx.parse_listing(json.dumps(bad).encode())
    with pytest.raises(fx.Refused):
        fx.parse_listing(b"x" * (fx.MAX_LISTING + 1))


def test_encode_line_is_bounded() -> None:
    with pytest.raises(ValueError):
        fx.encode_line({"x": "y" * fx.MAX_LINE})
    assert fx.encode_line({"offset": 0}) == b'{"offset":0}\n'


def test_archive_frames_any_split() -> None:
    trailer = fx.Trailer(7, SHA, 2)
    wire = fx.frame(b"abc") + fx.frame(b"defg") + trailer.encode()
    for cut in range(len(wire) + 1):
        reader = fx.FramedReader()
        got = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert b"".join(got) == b"abcdefg"
        assert reader.trailer == trailer
    header = fx.ArchiveHeader("logs.tar", 123)
    obj, rest = fx.LineReader().feed(header.encode()) or ({}, b"")
    assert fx.ArchiveHeader.parse(obj) == header and rest == b""


@pytest.mark.parametrize(
    "wire",
    [
        (fx.MAX_FRAME + 1).to_bytes(4, "big"),
        fx.frame(b"") + b'{"size":1}\n',
        fx.frame(b"") + fx.encode_line({"size": 0, "sha256": SHA, "skipped": 0}) + b"x",
    ],
)
def test_bad_archive_frames(wire: bytes) -> None:
    with pytest.raises(fx.Refused, match="bad_params"):
        fx.FramedReader().feed(wire)


def test_after_the_trailer_nothing_more() -> None:
    reader = fx.FramedReader()
    reader.feed(fx.Trailer(0, SHA, 0).encode())
    assert reader.trailer is not None and reader.feed(b"") == []
    with pytest.raises(fx.Refused):
        reader.feed(b"more")


@given(st.binary(max_size=600), st.integers(min_value=0, max_value=600))
def test_readers_take_any_bytes_without_crashing(data: bytes, cut: int) -> None:
    """Peer bytes only ever give results or Refused (never another exception)."""
    for reader in (fx.LineReader(), fx.FramedReader()):
        with contextlib.suppress(fx.Refused):
            reader.feed(data[:cut])
            reader.feed(data[cut:])
    with contextlib.suppress(fx.Refused):
        fx.parse_listing(data)


KEYS = st.sampled_from(["name", "size", "sha256", "offset", "mtime", "path", "archive"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=70))


@given(st.dictionaries(KEYS, VALUES))
def test_message_parsers_take_any_object(obj: dict[str, Any]) -> None:
    """Any JSON object gives a checked message or Refused (never another exception)."""
    for parse in (fx.GetHeader.parse, fx.ArchiveHeader.parse, fx.parse_put, fx.parse_get):
        with contextlib.suppress(fx.Refused):
            parse(obj)
