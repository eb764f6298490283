import stat
from pathlib import Path

import pytest

from enkaku.technician import config


def test_login_is_saved_privately_and_becomes_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sub" / "technician.json"
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    config.save_login("https://a.example/", "alice", "ek_one")
    config.save_login("https://b.example", "bob", "ek_two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.token_for("https://a.example") == "ek_one"
    assert config.token_for("https://b.example/") == "ek_two"
    assert config.default_server() == "https://b.example"
    assert config.token_for("https://c.example") is None


def test_a_corrupt_file_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "technician.json"
    path.write_text("{not json")
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    with pytest.raises(ValueError, match="log in again"):
        config.load()
