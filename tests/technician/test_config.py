import stat
from pathlib import Path

import pytest

from enkaku.secretfile import SecretFileError
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
    path.chmod(0o600)
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    with pytest.raises(ValueError, match=r"corrupt.*logs in again"):
        config.load()


def test_a_planted_symlink_never_receives_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old writer opened "technician.tmp" without O_EXCL | O_NOFOLLOW.
    path = tmp_path / "technician.json"
    stolen = tmp_path / "stolen"
    (tmp_path / "technician.tmp").symlink_to(stolen)
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    config.save_login("https://a.example", "alice", "ek_secret")
    assert not stolen.exists()
    assert config.token_for("https://a.example") == "ek_secret"


def test_a_token_file_others_may_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "technician.json"
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    config.save_login("https://a.example", "alice", "ek_secret")
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        config.token_for("https://a.example")
    with pytest.raises(SecretFileError):
        config.save_login("https://a.example", "alice", "ek_other")  # nothing is rewritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_hostile_config_file_is_corrupt_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "technician.json"
    path.write_text("[" * 15_000)
    path.chmod(0o600)
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    with pytest.raises(SecretFileError, match="corrupt"):
        config.load()


def test_the_cli_says_what_to_do_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from enkaku import cli

    path = tmp_path / "technician.json"
    monkeypatch.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    monkeypatch.setenv("ENKAKU_LANG", "en")
    config.save_login("https://a.example", "alice", "ek_secret")
    path.chmod(0o644)
    assert cli.main(["connect", "123456789"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("enkaku: ") and "chmod 600" in err and "Traceback" not in err
    key_dir = tmp_path / "agent"
    key_dir.mkdir()
    (key_dir / "device_key").write_bytes(b"k" * 32)
    (key_dir / "device_key").chmod(0o644)
    argv = ["agent", "--headless", "--server", "http://127.0.0.1:1", "--config-dir", str(key_dir)]
    assert cli.main(argv) == 2
    assert "chmod 600" in capsys.readouterr().err
