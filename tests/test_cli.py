"""The `enkaku` command as a new user meets it: help texts, one-line errors, exit codes.

Most cases run the installed command as a child process and check its exit code and
that stderr is one clear line (no traceback).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enkaku.cli import build_parser
from enkaku.demo import _print_banner, suggested_vnc_port
from tests.e2e.harness import ENKAKU, free_port


def enkaku(
    *args: str, lang: str = "en", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`enkaku args...` with messages in ``lang`` and no display: exit code, stdout, stderr."""
    full_env = dict(os.environ, ENKAKU_LANG=lang)
    full_env.pop("DISPLAY", None)
    full_env.update(env or {})
    return subprocess.run(
        [ENKAKU, *args],
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """(exit code, stderr) of `enkaku args...` with English messages."""
    done = enkaku(*args, env=env, timeout=timeout)
    return done.returncode, done.stderr


def one_line(stderr: str) -> str:
    """The single message line (log lines from the server's INFO logger aside)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and " INFO " not in ln]
    lines = [ln for ln in lines if " WARNING enkaku." not in ln]
    assert len(lines) == 1, stderr
    return lines[0]


# -- argparse tree ---------------------------------------------------------------------


def parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_every_option_and_argument_has_help_text() -> None:
    missing = [
        f"{prog} {action.option_strings or action.dest}"
        for prog, parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert missing == []


def test_every_help_page_renders() -> None:
    for prog, parser in parsers(build_parser()):
        assert prog in parser.format_help()


def test_every_command_has_help_text() -> None:
    missing = [
        f"{prog} {choice.dest}"
        for prog, parser in parsers(build_parser())
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
        if not choice.help
    ]
    assert missing == []


def test_an_unknown_global_flag_is_named() -> None:
    code, err = run("--bogus")
    assert code == 2
    assert "unrecognized arguments: --bogus" in err
    assert "required" not in err


def test_no_command_says_a_command_is_required() -> None:
    code, err = run()
    assert code == 2
    assert "a command is required" in err


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["login", "agent"])
@pytest.mark.parametrize("url", ["localhost:8443", "support.example.com", "ftp://x", "https://"])
def test_a_server_url_without_http_or_https_is_refused_at_start(command: str, url: str) -> None:
    extra = ["--user", "x"] if command == "login" else ["--headless"]
    # The agent used to retry such a URL forever; now it stops at once.
    code, err = run(command, "--server", url, *extra, env={"ENKAKU_LOGIN_PASSWORD": "x"})
    assert code == 2
    assert "expected a server URL such as https://support.example.com" in err
    assert "Traceback" not in err


def test_connect_without_any_login_has_no_placeholder(tmp_path: Path) -> None:
    code, err = run(
        "connect", "123456789", env={"ENKAKU_TECHNICIAN_CONFIG": str(tmp_path / "t.json")}
    )
    assert code == 3
    line = one_line(err)
    assert "Not logged in to URL" not in line
    assert line.startswith("Not logged in to any server")


def test_an_https_proxy_url_is_refused_at_start() -> None:
    code, err = run(
        "agent",
        "--server",
        f"https://127.0.0.1:{free_port()}",
        "--headless",
        env={
            "HTTPS_PROXY": "https://proxy.example:3128",
            "https_proxy": "https://proxy.example:3128",
        },
    )
    assert code == 2
    assert "must be an http:// proxy URL" in one_line(err)


# -- connect: checks before anything is sent ---------------------------------------------


@pytest.fixture
def logged_in(tmp_path: Path) -> dict[str, str]:
    """A saved login for a server that does not exist (nothing may reach it)."""
    from enkaku.technician import config

    path = tmp_path / "technician.json"
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"ENKAKU_TECHNICIAN_CONFIG": str(path)}
    mp = pytest.MonkeyPatch()
    mp.setenv("ENKAKU_TECHNICIAN_CONFIG", str(path))
    try:
        config.save_login(dead, "tech", "t" * 43)
    finally:
        mp.undo()
    return env


@pytest.mark.parametrize("password", ["abcd-efg", "abcd-efghj", "abcd-ef!h", "パスワード"])
def test_a_malformed_password_is_called_malformed_not_wrong(
    logged_in: dict[str, str], password: str
) -> None:
    code, err = run("connect", "123456789", env={**logged_in, "ENKAKU_PASSWORD": password})
    assert code == 2
    line = one_line(err)
    assert "not a one-time password" in line
    assert "Wrong" not in line
    # Checked before any network attempt: the dead server was never tried.
    assert "Cannot reach" not in err


def test_vnc_listen_off_loopback_needs_the_public_flag(logged_in: dict[str, str]) -> None:
    code, err = run(
        "connect",
        "123456789",
        "--vnc-listen",
        "192.0.2.1:5901",
        env={**logged_in, "ENKAKU_PASSWORD": "abcd-efgh"},
    )
    assert code == 2
    line = one_line(err)
    assert "--vnc-listen-public" in line and "no VNC password" in line


def test_vnc_listen_public_says_who_can_reach_the_screen(logged_in: dict[str, str]) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: binding fails, after the warning and
    # before the server is contacted.
    code, err = run(
        "connect",
        "123456789",
        "--vnc-listen",
        "192.0.2.1:5901",
        "--vnc-listen-public",
        env={**logged_in, "ENKAKU_PASSWORD": "abcd-efgh"},
    )
    assert "Traceback" not in err
    assert "anyone who can reach that address can see and control it" in err
    assert code == 2
    assert "Cannot listen on 192.0.2.1:5901" in err
    assert "Cannot reach" not in err


def test_a_busy_vnc_port_fails_before_the_session_is_asked_for(
    logged_in: dict[str, str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run(
            "connect",
            "123456789",
            "--vnc-listen",
            f"127.0.0.1:{port}",
            env={**logged_in, "ENKAKU_PASSWORD": "abcd-efgh"},
        )
    assert code == 2
    line = one_line(err)
    assert f"Cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    assert "Cannot reach" not in err  # the server (and so the customer) was never asked


# -- server and admin commands -----------------------------------------------------------


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("mysql://u:p@127.0.0.1/enkaku", "unsupported database 'mysql'"),
        ("not a url", "invalid database URL"),
    ],
)
def test_server_with_an_unusable_database_url(db: str, expected: str) -> None:
    code, err = run("server", "--db", db, "--port", str(free_port()))
    assert code == 2
    assert expected in one_line(err)


def test_server_with_an_unreachable_postgresql() -> None:
    db = f"postgresql://enkaku:secret@127.0.0.1:{free_port()}/enkaku"
    code, err = run("server", "--db", db, "--port", str(free_port()))
    assert code == 2
    line = one_line(err)
    assert "cannot open or migrate the database" in line
    assert "secret" not in err


def test_server_on_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run("server", "--db", f"sqlite:///{tmp_path}/s.db", "--port", str(port))
    assert code == 2
    line = one_line(err)
    assert line == f"enkaku server: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("exists", [False, True])
def test_server_with_an_unusable_certificate(tmp_path: Path, exists: bool) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if exists:
        cert.write_text("not PEM\n")
        key.write_text("not PEM\n")
    code, err = run(
        "server",
        "--db",
        f"sqlite:///{tmp_path}/s.db",
        "--port",
        str(free_port()),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"enkaku server: cannot use the TLS certificate {cert} with the key")
    assert ("not a usable PEM" if exists else "No such file or directory") in line


@pytest.mark.parametrize("command", [["user", "--db", "mysql://x/y", "add", "bob"]])
def test_admin_with_an_unusable_database_url(command: list[str]) -> None:
    code, err = run(*command, env={"ENKAKU_NEW_PASSWORD": "0123456789ab"})
    assert code == 2
    assert "unsupported database 'mysql'" in one_line(err)


@pytest.mark.parametrize(
    "command",
    [["user", "add", "bob"], ["contract", "add", "C-1", "--customer", "X"], ["contract", "list"]],
)
def test_admin_refuses_a_database_file_that_does_not_exist(
    tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "sever.db"
    db = ["--db", f"sqlite:///{typo}"]
    code, err = run(command[0], *db, *command[1:], env={"ENKAKU_NEW_PASSWORD": "0123456789ab"})
    assert code == 2
    line = one_line(err)
    assert str(typo) in line and "--create" in line
    assert not typo.exists()  # no new, empty database appeared
    # The same through ENKAKU_DB.
    code, _ = run(*command, env={"ENKAKU_NEW_PASSWORD": "0123456789ab", "ENKAKU_DB": db[1]})
    assert code == 2 and not typo.exists()


def test_admin_creates_a_database_only_with_create(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = f"sqlite:///{path}"
    code, err = run(
        "user", "--db", db, "--create", "add", "bob", env={"ENKAKU_NEW_PASSWORD": "0123456789ab"}
    )
    assert code == 0, err
    assert path.exists()
    # Once it exists, no flag is needed.
    code, err = run("contract", "--db", db, "add", "C-1", "--customer", "X")
    assert code == 0, err


def test_a_bad_day_is_a_usage_error(tmp_path: Path) -> None:
    code, err = run("contract", "add", "C-1", "--customer", "X", "--valid-until", "31.3.2026")
    assert code == 2
    assert "expected a day as YYYY-MM-DD, got '31.3.2026'" in err


# -- demo ----------------------------------------------------------------------------------


def test_the_demo_suggests_a_free_vnc_port_when_its_own_is_busy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port = suggested_vnc_port(taken)
        assert port != taken
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # it really is free
    free = free_port()
    assert suggested_vnc_port(free) == free
    info = {
        "server_url": "http://127.0.0.1:1",
        "console_url": "http://127.0.0.1:1/",
        "login": "demo",
        "login_password": "pw",
        "agent_id": "123456789",
        "agent_password": "abcd-efgh",
        "display": ":9",
    }
    _print_banner(info, port)
    out = capsys.readouterr().out
    assert f"--vnc-listen 127.0.0.1:{port}" in out and f"127.0.0.1::{port}" in out
    assert "5901" not in out or port == 5901


# -- enkaku end: checks before anything is sent --------------------------------------------

SESSION = "0123456789abcdef" * 2


@pytest.mark.parametrize("comment", [None, "", "   "])
def test_end_refuses_a_policy_reason_without_a_comment(
    logged_in: dict[str, str], comment: str | None
) -> None:
    extra = [] if comment is None else ["--comment", comment]
    code, err = run("end", SESSION, "--reason", "malware_found", *extra, env=logged_in)
    # Exit 2 and nothing sent: the saved server does not exist, so a request would have
    # been "Cannot reach the server" (exit 9).
    assert code == 2
    assert one_line(err) == (
        "The end reason malware_found needs --comment saying what you found. Nothing was sent."
    )


def test_end_refuses_a_comment_the_server_would_not_keep(logged_in: dict[str, str]) -> None:
    code, err = run(
        "end", SESSION, "--reason", "illegal_request", "--comment", "x" * 1001, env=logged_in
    )
    assert code == 2
    assert "1001 characters" in one_line(err)


def test_end_without_a_policy_reason_needs_no_comment(logged_in: dict[str, str]) -> None:
    code, err = run("end", SESSION, "--reason", "technician_ended", env=logged_in)
    assert code == 9  # it did try: the saved server is not there
    assert one_line(err).startswith("Cannot reach the server http://127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["not-a-session", "--reason", "technician_ended"], "a session ID has 32 hexadecimal"),
        ([SESSION, "--reason", "customer_ended"], "invalid choice: 'customer_ended'"),
        ([SESSION], "the following arguments are required: --reason"),
    ],
)
def test_end_usage_errors(args: list[str], expected: str) -> None:
    code, err = run("end", *args)
    assert code == 2
    assert expected in err


def test_end_reasons_are_the_ones_the_api_accepts() -> None:
    from enkaku.cli import END_REASONS, MAX_END_COMMENT
    from enkaku.server.api.routes import API_END_REASONS, EndRequest

    assert sorted(END_REASONS) == sorted(API_END_REASONS)
    assert END_REASONS[0] == "technician_ended"
    assert EndRequest.model_fields["comment"].metadata[0].max_length == MAX_END_COMMENT


# -- Japanese ------------------------------------------------------------------------------


def run_ja(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`enkaku args...` with ENKAKU_LANG=ja: exit code, stdout and stderr."""
    return enkaku(*args, lang="ja", env=env)


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (
            ["server", "--db", "mysql://x"],
            2,
            "enkaku server: データベース 'mysql' には対応していません。",
        ),
        (
            ["server", "--db", "sqlite:///:memory:", "--port", "70000"],
            2,
            "enkaku server: port: 70000 は TCP ポート番号ではありません",
        ),
        (["connect", "12345"], 2, "エージェント ID は 9 桁の数字です ('12345' が指定されました)"),
        (["agent", "--server", "localhost:8443", "--headless"], 2, "https:// または http://"),
        ([], 2, "コマンドを指定してください"),
        (
            ["end", SESSION, "--reason", "credentials_refused"],
            2,
            "終了理由 credentials_refused には、何が見つかったかを説明する --comment が必要です。",
        ),
        (
            ["end", "xyz", "--reason", "technician_ended"],
            2,
            "セッション ID は 32 文字の 16 進数です",
        ),
        (
            ["agent", "--server", "http://127.0.0.1:1", "--headless", "--ca-file", "/nonexistent"],
            2,
            "enkaku agent: CA ファイル /nonexistent が存在しません",
        ),
        (
            ["login", "--server", "http://127.0.0.1:1", "--user", "x"],
            1,
            "enkaku: ENKAKU_LOGIN_PASSWORD を設定するか、端末で実行して入力してください",
        ),
    ],
)
def test_errors_in_japanese(args: list[str], code: int, expected: str) -> None:
    done = run_ja(*args)
    assert done.returncode == code
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_server_start_errors_in_japanese(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not PEM\n")
    key.write_text("not PEM\n")
    db = f"sqlite:///{tmp_path}/s.db"
    done = run_ja("server", "--db", db, "--port", str(free_port()), "--tls-cert", str(cert),
                  "--tls-key", str(key))  # fmt: skip
    assert done.returncode == 2
    assert f"TLS 証明書 {cert} と秘密鍵 {key} を使用できません: 使用できる PEM 形式" in done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_ja("server", "--db", db, "--port", str(port))
    assert done.returncode == 2
    assert f"enkaku server: 127.0.0.1:{port} で待ち受けできません: " in done.stderr


def test_admin_output_in_japanese(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/new.db"]
    done = run_ja(
        "user", *db, "--create", "add", "bob", env={"ENKAKU_NEW_PASSWORD": "0123456789ab"}
    )
    assert (done.returncode, done.stdout) == (0, "技術者 bob を追加しました。\n"), done.stderr
    done = run_ja("contract", *db, "add", "C-1", "--customer", "X")
    assert (done.returncode, done.stdout) == (0, "契約 C-1 を追加しました。\n"), done.stderr
    done = run_ja("contract", *db, "add", "C-1", "--customer", "X")
    assert done.returncode == 1
    assert done.stderr.strip() == "enkaku: 契約コード 'C-1' の契約はすでに存在します"


def test_every_message_has_both_texts_with_the_same_placeholders() -> None:
    import string

    from enkaku.i18n import CATALOG

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    bad = [k for k, (en, ja) in CATALOG.items() if not en or not ja or fields(en) != fields(ja)]
    assert bad == []


# -- second factor, own password, admin resets (issue 8) ----------------------------------


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[Any, str, dict[str, str]]]:
    """The real server in this process over a database made by the CLI (user tech), the
    URL, and an environment whose saved logins live in tmp_path."""
    from tests.e2e.harness import InProcessServer, make_db

    db = make_db(tmp_path)
    server = InProcessServer(db)
    url = server.start()
    env = {"ENKAKU_TECHNICIAN_CONFIG": str(tmp_path / "technician.json")}
    try:
        yield server, url, env
    finally:
        server.stop()
        server.loop.close()


def _enrol(server: Any, user: str = "tech") -> str:
    """Give ``user`` an authenticator directly in the server's store; its secret."""
    from enkaku.server import totp

    store = server.services.store
    tech = server.call(store.technician_by_name(user))
    secret = totp.new_secret()
    server.call(store.begin_totp(tech.id, secret))
    assert server.call(store.confirm_totp(tech.id, 0, []))
    return secret


def test_login_with_a_totp_code(live_server: tuple[Any, str, dict[str, str]]) -> None:
    from enkaku.server import totp
    from tests.e2e.harness import LOGIN_PASSWORD

    server, url, env = live_server
    secret = _enrol(server)
    env = {**env, "ENKAKU_LOGIN_PASSWORD": LOGIN_PASSWORD}
    # No terminal to ask on: the server's words and how to give the code.
    code, err = run("login", "--server", url, "--user", "tech", env=env)
    assert code == 3
    assert "authenticator app" in err and "--totp CODE" in err
    code, err = run("login", "--server", url, "--user", "tech", "--totp", "12345", env=env)
    assert code == 3 and "code is wrong" in one_line(err)
    now = totp.code_at(secret, totp.step_of(time.time()) + 1)
    code, err = run("login", "--server", url, "--user", "tech", "--totp", now, env=env)
    assert code == 0, err
    assert "Logged in" in err
    code, err = run("login", "--server", url, "--user", "tech", "--totp", now, env=env)
    assert code == 3 and "already used" in err
    done = enkaku(
        "login",
        "--server",
        url,
        "--user",
        "tech",
        lang="ja",
        env={**env, "ENKAKU_LOGIN_PASSWORD": LOGIN_PASSWORD},
    )
    assert done.returncode == 3
    assert "認証アプリ" in done.stderr and "--totp CODE で指定してください" in done.stderr


def test_user_passwd_changes_the_own_password(
    live_server: tuple[Any, str, dict[str, str]],
) -> None:
    from tests.e2e.harness import LOGIN_PASSWORD

    server, url, env = live_server
    code, err = run(
        "login",
        "--server",
        url,
        "--user",
        "tech",
        env={**env, "ENKAKU_LOGIN_PASSWORD": LOGIN_PASSWORD},
    )
    assert code == 0, err
    code, err = run(
        "user",
        "passwd",
        env={
            **env,
            "ENKAKU_LOGIN_PASSWORD": "wrong one",
            "ENKAKU_NEW_PASSWORD": "brand new passphrase",
        },
    )
    assert (code, one_line(err)) == (4, "Your current password is wrong.")
    code, err = run(
        "user",
        "passwd",
        env={**env, "ENKAKU_LOGIN_PASSWORD": LOGIN_PASSWORD, "ENKAKU_NEW_PASSWORD": "short"},
    )
    assert code == 2 and "at least 10" in err
    new = "brand new passphrase"
    code, err = run(
        "user",
        "passwd",
        env={**env, "ENKAKU_LOGIN_PASSWORD": LOGIN_PASSWORD, "ENKAKU_NEW_PASSWORD": new},
    )
    assert code == 0, err
    assert "Password changed" in err
    store = server.services.store
    assert server.call(store.verify_login("tech", new)) is not None
    assert server.call(store.verify_login("tech", LOGIN_PASSWORD)) is None


def test_admin_resets_password_and_second_factor(
    live_server: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    from datetime import timedelta

    server, url, env = live_server
    store = server.services.store
    _enrol(server)
    tech = server.call(store.technician_by_name("tech"))
    server.call(store.create_console_session(tech.id, timedelta(hours=1)))
    server.call(store.issue_token(tech.id))
    db = ["--db", f"sqlite:///{tmp_path}/server.db"]
    code, err = run("user", *db, "reset-password", "nobody", env={"ENKAKU_NEW_PASSWORD": "x" * 12})
    assert (code, one_line(err)) == (1, "enkaku: no user nobody")
    done = enkaku(
        "user", *db, "reset-password", "tech", env={"ENKAKU_NEW_PASSWORD": "reset by the admin"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "Password of tech replaced; their 1 console session(s) and 1 API token(s) are revoked."
    )
    assert server.call(store.verify_login("tech", "reset by the admin")) is not None
    done = enkaku("user", *db, "reset-totp", "tech", lang="ja")
    assert done.returncode == 0, done.stderr
    assert "tech の 2 要素認証" in done.stdout
    tech = server.call(store.technician_by_name("tech"))
    assert tech.totp_secret is None


def test_login_asks_for_the_code_at_a_terminal(
    live_server: tuple[Any, str, dict[str, str]],
) -> None:
    import pty

    from enkaku.server import totp
    from tests.e2e.harness import ENKAKU, LOGIN_PASSWORD

    server, url, env = live_server
    secret = _enrol(server)
    code = totp.code_at(secret, totp.step_of(time.time()) + 1)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{code}\n".encode())  # typed ahead; the tty keeps the line
        done = subprocess.run(
            [ENKAKU, "login", "--server", url, "--user", "tech"],
            env={**os.environ, **env, "ENKAKU_LANG": "en", "ENKAKU_LOGIN_PASSWORD": LOGIN_PASSWORD},
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(controller)
        os.close(terminal)
    assert done.returncode == 0, done.stderr
    assert "Authenticator code (or a recovery code) for tech: " in done.stdout
    assert "Logged in" in done.stderr


# -- the records: enkaku admin customer|contract|enrol|user (issue 9) ----------------------


def test_admin_records_commands(tmp_path: Path) -> None:
    import sqlite3

    db = ["--db", f"sqlite:///{tmp_path}/s.db"]
    env = {"ENKAKU_NEW_PASSWORD": "0123456789ab"}

    def ok(*args: str) -> str:
        done = enkaku(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout

    assert ok(
        "admin", "customer", *db, "--create", "add", "Acme", "--email", "it@acme.example"
    ) == ("added customer Acme (id 1)\n")
    done = enkaku("admin", "customer", *db, "add", "Acme")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "enkaku: a customer named 'Acme' already exists",
        "enkaku: 顧客 'Acme' はすでに存在します",
    ]
    # A contract needs an existing customer here (a typo must not make a new one).
    done = enkaku("admin", "contract", *db, "add", "X-1", "--customer", "Acme Ltd")
    assert done.returncode == 1 and "no customer 'Acme Ltd'" in done.stderr
    ok("admin", "contract", *db, "add", "AC-1", "--customer", "Acme", "--monthly-data", "20G")
    ok("admin", "contract", *db, "edit", "AC-1", "--monthly-sessions", "10", "--no-data-limit")
    listed = ok("admin", "contract", *db, "list", "--customer", "1")
    assert listed.split("\t")[0] == "AC-1" and "sessions/month 10\tdata/month -" in listed
    created = ok("admin", "enrol", *db, "create", "Acme", "--uses", "2", "--expires", "2099-12-31")
    code = created.split(": ")[1].splitlines()[0]
    assert len(code) == 19 and f"--enrol {code}" in created
    listed = ok("admin", "enrol", *db, "list")
    assert code not in listed and f"…{code[-4:]}" in listed and "uses 0/2" in listed
    ok("admin", "enrol", *db, "revoke", "1")
    assert ok("admin", "enrol", *db, "list").rstrip().endswith("revoked")
    ok("admin", "user", *db, "add", "aud", "--role", "auditor")
    ok("admin", "user", *db, "add", "bob")
    assert ok("admin", "user", *db, "disable", "bob").startswith("disabled bob")
    ok("admin", "user", *db, "role", "bob", "admin")
    users = ok("admin", "user", *db, "list").splitlines()
    assert [u.split("\t")[1:4] for u in users] == [
        ["aud", "auditor", "active"],
        ["bob", "admin", "disabled"],
    ]
    shown = ok("admin", "customer", *db, "show", "Acme")
    assert "contact\tit@acme.example" in shown and "contract\tAC-1" in shown
    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = conn.execute(
            "SELECT event, technician_id, target, detail FROM audit_events"
            " WHERE source = 'admin' ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == [
        "customer_created",
        "contract_created",
        "contract_changed",
        "enrolment_code_created",
        "enrolment_code_revoked",
        "technician_created",
        "technician_created",
        "technician_disabled",
        "technician_role",
    ]
    # The command line is the server's own: no actor; never a name, address or code.
    assert all(r[1] is None for r in rows)
    assert not [r for r in rows if any(s in f"{r[2]} {r[3]}" for s in ("Acme", "acme", code))]


def test_the_old_admin_commands_still_work_and_say_where_they_moved(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/s.db"]
    done = enkaku("user", *db, "--create", "add", "bob", env={"ENKAKU_NEW_PASSWORD": "x" * 12})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "added technician bob\n"
    assert one_line(done.stderr) == (
        "enkaku: `enkaku user add` is now `enkaku admin user add` (the old name keeps working)."
    )
    # As before: the customer is created from the name.
    done = enkaku("contract", *db, "add", "C-1", "--customer", "New Co")
    assert done.returncode == 0 and "enkaku admin contract add" in done.stderr
    assert enkaku("admin", "customer", *db, "list").stdout == "1\tNew Co\t\n"


def test_the_download_links_code_becomes_enrol() -> None:
    from enkaku.agent.preconfig import PreConfig, agent_argv

    config = PreConfig(server="https://support.example", code="K7QD-9XMF-2HWR-T4PB")
    assert agent_argv(["--headless"], config, None) == [
        "agent",
        *("--server", "https://support.example", "--enrol", "K7QD-9XMF-2HWR-T4PB", "--headless"),
    ]
    # A code the customer types wins over the baked-in one.
    assert agent_argv(["--enrol", "OTHER"], config, None)[-2:] == ["--enrol", "OTHER"]
    assert (
        build_parser().parse_args(["agent", "--server", "https://x", "--enrol", "C"]).enrol == "C"
    )
