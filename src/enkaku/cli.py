"""The `enkaku` command: server, agent, login, connect, demo, and administration."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from enkaku import __version__
from enkaku.i18n import register, t
from enkaku.protocol.control import SESSION_ACTIONS
from enkaku.secretfile import SecretFileError

register(
    {
        "prompt_totp": (
            "Authenticator code (or a recovery code) for {user}: ",
            "{user} の認証アプリのコード (またはリカバリーコード): ",
        ),
        "login_totp_option": (
            "Give it with --totp CODE (the 6-digit code your authenticator app shows now).",
            "--totp CODE で指定してください (認証アプリに今表示されている 6 桁のコード)。",
        ),
        "prompt_current_password": ("Current password: ", "現在のパスワード: "),
        "prompt_changed_password": ("New password: ", "新しいパスワード: "),
        "prompt_repeat_password": ("New password again: ", "新しいパスワード (確認): "),
        "passwords_differ": (
            "enkaku: the two new passwords differ; nothing was changed.",
            "enkaku: 2 回入力した新しいパスワードが一致しません。変更していません。",
        ),
        "passwd_done": (
            "Password changed. Your other console sessions and API tokens are signed out; "
            "this login stays.",
            "パスワードを変更しました。ほかのコンソールのセッションと API トークンはサインアウト"
            "されました。このログインはそのまま使えます。",
        ),
        "user_unknown": ("enkaku: no user {user}", "enkaku: ユーザー {user} はいません"),
        "arg_monitor": (
            "expected a monitor number from 1, got {value!r}",
            "モニター番号 (1 以上) を指定してください ({value!r} が指定されました)",
        ),
        "user_password_reset": (
            "Password of {user} replaced; their {sessions} console session(s) and {tokens} API "
            "token(s) are revoked.",
            "{user} のパスワードを置き換えました。コンソールのセッション {sessions} 件と API "
            "トークン {tokens} 件を無効にしました。",
        ),
        "user_totp_reset": (
            "Second factor of {user} removed (authenticator and recovery codes); their "
            "{sessions} console session(s) are signed out. They enrol again in the console.",
            "{user} の 2 要素認証 (認証アプリとリカバリーコード) を削除し、コンソールのセッション "
            "{sessions} 件をサインアウトしました。コンソールで再登録してください。",
        ),
    }
)


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(t("arg_hostport", value=value))
    return host.strip("[]"), int(port)


def _monitor_number(value: str) -> int:
    """A monitor's number: 1 is the leftmost (docs/cli.md, "Monitors")."""
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(t("arg_monitor", value=value))
    return int(value)


def _server_url(value: str) -> str:
    """A server URL as given on the command line: http(s)://host[:port][/prefix]."""
    from yarl import URL

    try:
        url = URL(value.strip())
        ok = url.scheme in ("http", "https") and bool(url.host) and url.absolute
        ok = ok and not url.query_string and not url.fragment
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            t("arg_server_url", value=value)
            + ("" if "://" in value else t("arg_server_url_scheme"))
        )
    return str(url).rstrip("/")


def _day(value: str) -> date:
    """A calendar day written YYYY-MM-DD."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(t("arg_day", value=value)) from None


def _agent_id(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) != 9 or any(ch not in "0123456789 -" for ch in value):
        raise argparse.ArgumentTypeError(t("arg_agent_id", value=value))
    return digits


def _session_id(value: str) -> str:
    """A session ID as `enkaku connect` prints it: 32 hexadecimal characters."""
    text = value.strip().lower()
    if len(text) != 32 or any(ch not in "0123456789abcdef" for ch in text):
        raise argparse.ArgumentTypeError(t("arg_session_id", value=value))
    return text


#: Reasons `enkaku end` may record (server: api.routes.API_END_REASONS); all but the
#: first are policy reasons, which need a comment and the session's own technician.
END_REASONS = (
    "technician_ended",
    "credentials_refused",
    "device_malfunction",
    "illegal_request",
    "malware_found",
)
#: The longest comment the server keeps (api.routes.EndRequest).
MAX_END_COMMENT = 1000


def _add_tls_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-file",
        type=Path,
        help="PEM CA certificate(s) to trust for the server (or ENKAKU_CA_FILE)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )


def _add_db_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        dest="db_url",
        help="database URL (as for `enkaku server`; default ENKAKU_DB, then the default "
        "SQLite file)",
    )
    parser.add_argument(
        "--create",
        action="store_true",
        help="create the SQLite database named by --db/ENKAKU_DB if it does not exist "
        "(without it, a missing file is an error: a mistyped path would give an empty one)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="enkaku", description="Self-hosted, end-to-end encrypted remote support."
    )
    p.add_argument("--version", action="version", version=f"enkaku {__version__}")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    # Not required=True: argparse would then report "the following arguments are required:
    # command" before an unknown option such as `enkaku --bogus`; main() checks it instead.
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("server", help="run the server")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 8443)")
    s.add_argument(
        "--db", dest="db_url", help="database URL (default: SQLite in the user data folder)"
    )
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain")
    s.add_argument("--tls-key", type=Path, help="PEM private key")
    s.add_argument(
        "--behind-proxy",
        action="store_true",
        default=None,
        help="a TLS-terminating reverse proxy is in front: allow plain HTTP on any address",
    )
    s.add_argument("--public-url", help="URL agents and technicians reach this node at")
    s.add_argument("--node-id", help="this node's name in session records")
    s.add_argument(
        "--heartbeat-timeout",
        type=float,
        help="seconds of silence before a peer is gone (default 5)",
    )
    s.add_argument(
        "--agent-heartbeat",
        type=float,
        help="seconds of silence before an idle agent's control link is gone (default 30)",
    )
    s.add_argument(
        "--agent-dir", type=Path, help="folder of the one-file agents (scripts/build-agent)"
    )
    s.add_argument(
        "--agent-ca-file", type=Path, help="PEM CA baked into downloaded agents (private CA)"
    )
    s.add_argument("--support-name", help="support company name shown in the customer's window")
    s.add_argument("--support-phone", help="support phone number shown with --support-name")
    pre = s.add_argument_group("limits before authentication (docs/operations.md)")
    for flag, kind, text in _PREAUTH_FLAGS:
        pre.add_argument(flag, type=kind, metavar="N", help=text)

    a = sub.add_parser("agent", help="run the customer's agent")
    a.add_argument(
        "--server",
        required=True,
        type=_server_url,
        help="server URL, e.g. https://support.example.com",
    )
    a.add_argument(
        "--headless",
        action="store_true",
        help="no window: print the ID and password as JSON lines on stdout",
    )
    a.add_argument(
        "--consent",
        choices=("ask", "allow", "deny"),
        default="ask",
        help="ask on the terminal (default), allow every request, or deny every request",
    )
    a.add_argument(
        "--consent-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --consent ask: no answer within this time is a no (default 60)",
    )
    a.add_argument(
        "--lang",
        choices=("ja", "en"),
        help="language of the window and messages (default: from the system locale)",
    )
    a.add_argument("--display", help="X display to serve (default $DISPLAY; none: no screen)")
    a.add_argument(
        "--backend",
        choices=("auto", "x11", "wayland-wlroots", "wayland-gnome", "wayland-portal"),
        default="auto",
        help="screen backend (default auto: from $WAYLAND_DISPLAY, $DISPLAY and the compositor)",
    )
    a.add_argument("--config-dir", type=Path, help="where the device key lives")
    a.add_argument(
        "--incoming",
        type=Path,
        metavar="DIR",
        help="where files from the technician go unless they name a folder "
        "(default ~/Downloads; the customer sees the folder in each question)",
    )
    a.add_argument(
        "--keep-partial",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="how long an interrupted transfer's received part is kept for resumption (default 24)",
    )
    a.add_argument(
        "--enrol",
        metavar="CODE",
        help="an enrolment code from the support company: registers this computer to "
        "your company on the first connection (a downloaded agent carries its own)",
    )
    a.add_argument(
        "--accept-terms",
        metavar="VERSION",
        help="accept this version of the server's terms of use without asking (scripted "
        "installs); any other version in force is asked as usual",
    )
    _add_tls_args(a)

    lg = sub.add_parser(
        "login", help="log in to a server (password from a prompt or ENKAKU_LOGIN_PASSWORD)"
    )
    lg.add_argument(
        "--server",
        required=True,
        type=_server_url,
        help="server URL, e.g. https://support.example.com",
    )
    lg.add_argument("--user", required=True, help="your technician user name")
    lg.add_argument(
        "--totp",
        metavar="CODE",
        help="your authenticator app's current code (or a recovery code), for scripts; "
        "without it you are asked when the account has a second factor",
    )
    _add_tls_args(lg)

    c = sub.add_parser(
        "connect", help="connect to an agent (password from a prompt or ENKAKU_PASSWORD)"
    )
    c.add_argument("agent_id", type=_agent_id, help="the 9-digit ID the customer reads to you")
    c.add_argument(
        "--server",
        type=_server_url,
        help="server URL (default: the last one you logged in to)",
    )
    c.add_argument("--contract", help="contract code the session is billed to")
    c.add_argument(
        "--vnc-listen",
        type=_hostport,
        metavar="HOST:PORT",
        help="serve the remote screen to VNC viewers on this address (keep it on loopback, "
        "e.g. 127.0.0.1:5901; port 0 picks a free one)",
    )
    c.add_argument(
        "--vnc-listen-public",
        action="store_true",
        help="allow --vnc-listen on an address other than loopback: anyone who can reach "
        "it sees and controls the customer's screen (there is no VNC password)",
    )
    c.add_argument(
        "--monitor",
        type=_monitor_number,
        metavar="N",
        help="with --vnc-listen, show only the customer's monitor N (1 is the leftmost); "
        "the whole desktop when it has no such monitor (default: the whole desktop)",
    )
    _add_tls_args(c)

    e = sub.add_parser(
        "end",
        help="end a session with a recorded reason (policy reasons need --comment)",
    )
    e.add_argument("session_id", type=_session_id, help="the session ID `enkaku connect` printed")
    e.add_argument(
        "--reason",
        required=True,
        choices=END_REASONS,
        help="technician_ended, or a policy reason (needs --comment; only your own session "
        "after the customer's consent)",
    )
    e.add_argument("--comment", help="what you found (required with a policy reason)")
    e.add_argument(
        "--server",
        type=_server_url,
        help="server URL (default: the last one you logged in to)",
    )
    _add_tls_args(e)

    _add_session_parser(sub)

    d = sub.add_parser("demo", help="server + agent on a virtual display + a technician account")
    d.add_argument("--json", action="store_true", help="print one JSON line when ready")
    d.add_argument("--port", type=int, default=0, help="server port (default: a free one)")

    u = sub.add_parser(
        "user", help="your own password (passwd); the rest moved to `enkaku admin user`"
    )
    _add_db_args(u)
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser(
        "add", help="add a technician (password from a prompt or ENKAKU_NEW_PASSWORD)"
    )
    ua.add_argument("username", help="the name the technician logs in with")
    ua.add_argument(
        "--display-name",
        default="",
        help="the name customers see in the consent question (default: the user name)",
    )
    ua.add_argument(
        "--company", default="", help="the company customers see in the consent question"
    )
    ua.add_argument(
        "--role",
        choices=("technician", "admin"),
        default="technician",
        help="technician (default) or admin",
    )
    up = usub.add_parser(
        "passwd",
        help="change your own password through the server (current password from a prompt "
        "or ENKAKU_LOGIN_PASSWORD, the new one from a prompt or ENKAKU_NEW_PASSWORD)",
    )
    up.add_argument(
        "--server",
        type=_server_url,
        help="server URL (default: the last one you logged in to)",
    )
    _add_tls_args(up)
    ur = usub.add_parser(
        "reset-password",
        help="replace a technician's password (from a prompt or ENKAKU_NEW_PASSWORD) and "
        "sign them out everywhere",
    )
    ur.add_argument("username", help="the technician's user name")
    ut = usub.add_parser(
        "reset-totp",
        help="remove a technician's second factor (authenticator and recovery codes) and "
        "sign them out of the console",
    )
    ut.add_argument("username", help="the technician's user name")

    k = sub.add_parser("contract", help="moved to `enkaku admin contract` (still works)")
    _add_db_args(k)
    ksub = k.add_subparsers(dest="action", required=True)
    ka = ksub.add_parser("add", help="add a contract")
    ka.add_argument("code", help="the contract code technicians bill sessions to")
    ka.add_argument("--customer", required=True, help="customer name")
    ka.add_argument(
        "--no-remote-support", action="store_true", help="the contract excludes remote support"
    )
    ka.add_argument("--valid-until", type=_day, help="last day (YYYY-MM-DD)")
    ksub.add_parser("list", help="list contracts")

    ad = sub.add_parser("admin", help="server administration")
    adsub = ad.add_subparsers(dest="area", required=True)
    tm = adsub.add_parser("terms", help="the terms of use customers accept (docs/operations.md)")
    tmsub = tm.add_subparsers(dest="terms_action", required=True)
    tp = tmsub.add_parser("publish", help="publish a new version of the terms of use")
    tp.add_argument("file", type=Path, help='TOML file with en = """...""" and ja = """..."""')
    tp.add_argument("--version", dest="terms_version", required=True, help="its version label")
    tp.add_argument(
        "--effective",
        type=_day,
        required=True,
        help="the day it takes effect (YYYY-MM-DD); after the first version, at least one "
        "month after today",
    )
    _add_db_args(tp)
    _add_db_args(tmsub.add_parser("list", help="list the published versions"))
    from enkaku.admin_cli import add_parsers as add_admin_parsers

    add_admin_parsers(adsub, _add_db_args, _day)
    return p


def _add_session_parser(sub: Any) -> None:
    """`enkaku session ...`: commands on the session a running `enkaku connect` holds."""
    sp = sub.add_parser(
        "session", help="act on the session `enkaku connect` holds (files, report, shell, ...)"
    )
    sp.add_argument("--session", metavar="ID", help="the session ID (needed when several run)")
    ssub = sp.add_subparsers(dest="session_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON lines on stdout")
    asked = argparse.ArgumentParser(add_help=False)
    asked.add_argument("--purpose", help="why you ask, shown to the customer")
    i = ssub.add_parser("info", parents=[asked], help="the system information report")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.add_argument("--html", metavar="FILE", help="save the report as an HTML page")
    g = ssub.add_parser("get", parents=[common, asked], help="fetch a file of the customer's")
    g.add_argument("remote", metavar="REMOTE_PATH", help="absolute path on the customer's side")
    g.add_argument("local", metavar="LOCAL", nargs="?", help="folder or new file (default .)")
    pt = ssub.add_parser("put", parents=[common, asked], help="send a file to the customer")
    pt.add_argument("local", metavar="LOCAL", help="the file to send")
    pt.add_argument(
        "remote_dir",
        metavar="REMOTE_DIR",
        nargs="?",
        help="absolute folder on the customer's side (default: their Downloads)",
    )
    pt.add_argument("--overwrite", action="store_true", help="replace a file of that name")
    sc = ssub.add_parser("screenshot", parents=[common, asked], help="save a screenshot (PNG)")
    sc.add_argument("file", metavar="FILE", nargs="?", help="default screenshot-<time>.png")
    ch = ssub.add_parser("chat", parents=[common], help="chat with the customer")
    ch.add_argument(
        "text", metavar="TEXT", nargs="?", help="one line to send (none: lines from stdin)"
    )
    sh = ssub.add_parser("shell", parents=[common, asked], help="a shell on the customer's side")
    sh.add_argument("-c", dest="shell_command", metavar="COMMAND", help="run COMMAND and exit")
    ty = ssub.add_parser(
        "type",
        parents=[common, asked],
        help="type a text on the customer's keyboard (login screens, password fields)",
    )
    ty.add_argument(
        "text",
        metavar="TEXT",
        nargs="?",
        help="the text (or --stdin, to keep it off the command line)",
    )
    ty.add_argument(
        "--stdin",
        action="store_true",
        help="read the text from stdin (a terminal asks without echo)",
    )
    ty.add_argument("--enter", action="store_true", help="press Enter after the text")
    en = ssub.add_parser("end", parents=[common], help="end the session with a reason")
    en.add_argument(
        "--reason",
        choices=END_REASONS,
        default="technician_ended",
        help="technician_ended (default), or a policy reason (needs --comment)",
    )
    en.add_argument("--comment", help="what you found (required with a policy reason)")
    ssub.add_parser("status", parents=[common], help="the session and what is allowed now")
    al = ssub.add_parser(
        "allow",
        parents=[common, asked],
        help="ask the customer to allow a session action (clipboard, control, browse, ...)",
    )
    al.add_argument(
        "action",
        choices=sorted(SESSION_ACTIONS),
        help="what to ask for; it stays allowed until the customer withdraws it",
    )


#: Server flags named like their setting (docs/operations.md#limits-before-authentication).
_PREAUTH_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--auth-timeout", float, "seconds an agent link or relay leg has to authenticate (5)"),
    (
        "--max-unauthenticated-per-address",
        int,
        "WebSockets one address may hold before they authenticate (500)",
    ),
    ("--agent-registration-burst", int, "new agent IDs one address may register at once (300)"),
    (
        "--agent-registrations-per-minute",
        float,
        "then this many new agent IDs a minute per address (30)",
    ),
    ("--header-timeout", float, "seconds to finish a request's headers (15)"),
    ("--body-timeout", float, "seconds for an API request body to arrive (30)"),
    (
        "--agent-expiry-days",
        float,
        "delete agent IDs offline this long and in no session; 0: never (180)",
    ),
)


def _tls(args: argparse.Namespace) -> Any:
    from enkaku.transport.tls import client_ssl_context

    try:
        return client_ssl_context(args.ca_file, insecure=args.insecure)
    except FileNotFoundError as exc:
        raise SystemExit(f"enkaku: {exc}") from None  # tls says it in the user's language


def _is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost`` (names are not resolved)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proxy_ok(server: str) -> bool:
    """False (after saying why) if the proxy variables cannot be used for ``server``."""
    from enkaku.transport.proxy import ProxyError, proxy_for

    try:
        proxy_for(server)
    except ProxyError as exc:
        print(f"enkaku: {exc}", file=sys.stderr)
        return False
    return True


def _setup_logging(verbose: int) -> None:
    """-v: INFO, -vv: DEBUG for enkaku's own loggers only.

    Libraries stay at WARNING even with -vv: some log query parameters at DEBUG
    (aiosqlite), which would put password hashes and token digests in the log.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("enkaku").setLevel(level)


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise SystemExit(t("secret_env_missing", env=env))
    return getpass.getpass(prompt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(t("command_required"))
    _setup_logging(args.verbose)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except SecretFileError as exc:  # a loose or planted key/token file: say what to do
        print(f"enkaku: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "server":
        from enkaku.server.settings import SettingsError, from_env

        if args.verbose == 0:
            logging.getLogger("enkaku").setLevel(logging.INFO)
        try:
            settings = from_env(
                host=args.host,
                port=args.port,
                db_url=args.db_url,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                behind_proxy=args.behind_proxy,
                public_url=args.public_url,
                node_id=args.node_id,
                heartbeat_timeout=args.heartbeat_timeout,
                agent_heartbeat=args.agent_heartbeat,
                agent_dir=args.agent_dir,
                agent_ca_file=args.agent_ca_file,
                support_name=args.support_name,
                support_phone=args.support_phone,
                **{
                    f[2:].replace("-", "_"): getattr(args, f[2:].replace("-", "_"))
                    for f, *_ in _PREAUTH_FLAGS
                },
            )
        except SettingsError as exc:
            print(f"enkaku server: {exc}", file=sys.stderr)
            return 2
        return _run_server(settings)
    if args.command == "agent":
        from enkaku.agent.main import run_agent

        return run_agent(args)
    if args.command == "login":
        from enkaku.technician import config
        from enkaku.technician.client import ClientError, login

        server = args.server
        if not _proxy_ok(server):
            return 2
        from enkaku.technician.client import TotpRequired

        password = _secret("ENKAKU_LOGIN_PASSWORD", t("prompt_login_password", user=args.user))
        tls = _tls(args)
        try:
            try:
                token = asyncio.run(
                    login(server, args.user, password, totp=args.totp, ssl_context=tls)
                )
            except TotpRequired as exc:
                if args.totp is not None or not sys.stdin.isatty():
                    print(f"{exc}\n{t('login_totp_option')}", file=sys.stderr)
                    return exc.exit_code
                code = input(t("prompt_totp", user=args.user)).strip()
                token = asyncio.run(login(server, args.user, password, totp=code, ssl_context=tls))
        except ClientError as exc:
            print(exc, file=sys.stderr)
            return exc.exit_code
        config.save_login(server, args.user, token)
        print(t("logged_in", server=server, user=args.user), file=sys.stderr)
        return 0
    if args.command == "connect":
        from enkaku.protocol.errors import ProtocolError
        from enkaku.protocol.password import normalize_password
        from enkaku.technician import config
        from enkaku.technician.client import ConnectOptions, ExitCode, connect

        target = (args.server or config.default_server() or "").rstrip("/")
        api_token = config.token_for(target) if target else None
        if not target:
            print(t("not_logged_in_anywhere"), file=sys.stderr)
            return ExitCode.NOT_LOGGED_IN
        if not api_token:
            print(t("not_logged_in", server=target), file=sys.stderr)
            return ExitCode.NOT_LOGGED_IN
        if args.vnc_listen is not None:
            host, port = args.vnc_listen
            addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if not _is_loopback(host):
                if not args.vnc_listen_public:
                    print(t("vnc_listen_not_loopback", addr=addr), file=sys.stderr)
                    return ExitCode.USAGE
                print(t("vnc_listen_public", addr=addr), file=sys.stderr)
        if not _proxy_ok(target):
            return ExitCode.USAGE
        password = _secret("ENKAKU_PASSWORD", t("prompt_password", agent_id=args.agent_id))
        try:
            # Checked before anything goes out: a typo must not cost an attempt.
            normalize_password(password)
        except ProtocolError as exc:
            print(t("malformed_password", detail=exc), file=sys.stderr)
            return ExitCode.USAGE
        opts = ConnectOptions(
            server=target,
            token=api_token,
            agent_id=args.agent_id,
            password=password,
            contract=args.contract,
            vnc_listen=args.vnc_listen,
            monitor=args.monitor,
            ssl_context=_tls(args),
        )
        return asyncio.run(connect(opts))
    if args.command == "end":
        return _end(args)
    if args.command == "session":
        from enkaku.technician.session_cli import run

        return run(args)
    if args.command == "demo":
        from enkaku.demo import run_demo

        return run_demo(json_output=args.json, port=args.port)
    if args.command == "user" and args.action == "passwd":
        return _passwd(args)
    if args.command in ("user", "contract", "admin"):
        return asyncio.run(_admin(args))
    raise AssertionError(args.command)


def _end(args: argparse.Namespace) -> int:
    """`enkaku end`: end a session through the API with a recorded reason."""
    from enkaku.technician import config
    from enkaku.technician.client import ClientError, ExitCode, end_session

    comment = (args.comment or "").strip() or None
    # Checked before anything goes out, in the server's words (routes.end_session).
    if args.reason != "technician_ended" and comment is None:
        print(t("end_comment_missing", reason=args.reason), file=sys.stderr)
        return ExitCode.USAGE
    if comment is not None and len(comment) > MAX_END_COMMENT:
        print(
            t("end_comment_too_long", length=len(comment), limit=MAX_END_COMMENT), file=sys.stderr
        )
        return ExitCode.USAGE
    target = (args.server or config.default_server() or "").rstrip("/")
    if not target:
        print(t("not_logged_in_anywhere"), file=sys.stderr)
        return ExitCode.NOT_LOGGED_IN
    api_token = config.token_for(target)
    if not api_token:
        print(t("not_logged_in", server=target), file=sys.stderr)
        return ExitCode.NOT_LOGGED_IN
    if not _proxy_ok(target):
        return ExitCode.USAGE
    try:
        asyncio.run(
            end_session(
                target,
                api_token,
                args.session_id,
                args.reason,
                comment,
                ssl_context=_tls(args),
            )
        )
    except ClientError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return ExitCode.OK


def _passwd(args: argparse.Namespace) -> int:
    """`enkaku user passwd`: change your own password through the API."""
    from enkaku.technician import config
    from enkaku.technician.client import ClientError, ExitCode, change_password

    target = (args.server or config.default_server() or "").rstrip("/")
    if not target:
        print(t("not_logged_in_anywhere"), file=sys.stderr)
        return ExitCode.NOT_LOGGED_IN
    api_token = config.token_for(target)
    if not api_token:
        print(t("not_logged_in", server=target), file=sys.stderr)
        return ExitCode.NOT_LOGGED_IN
    if not _proxy_ok(target):
        return ExitCode.USAGE
    current = _secret("ENKAKU_LOGIN_PASSWORD", t("prompt_current_password"))
    new = os.environ.get("ENKAKU_NEW_PASSWORD")
    if not new:
        new = _secret("ENKAKU_NEW_PASSWORD", t("prompt_changed_password"))
        if getpass.getpass(t("prompt_repeat_password")) != new:
            print(t("passwords_differ"), file=sys.stderr)
            return ExitCode.USAGE
    if len(new) < 10:
        print(t("password_too_short"), file=sys.stderr)
        return ExitCode.USAGE
    try:
        asyncio.run(change_password(target, api_token, current, new, ssl_context=_tls(args)))
    except ClientError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(t("passwd_done"), file=sys.stderr)
    return ExitCode.OK


async def _reset_user(store: Any, args: argparse.Namespace) -> int:
    """`enkaku user reset-password|reset-totp NAME` on the database."""
    tech = await store.technician_by_name(args.username)
    if tech is None:
        print(t("user_unknown", user=args.username), file=sys.stderr)
        return 1
    if args.action == "reset-password":
        password = _secret("ENKAKU_NEW_PASSWORD", t("prompt_new_password", user=args.username))
        if len(password) < 10:
            print(t("password_too_short"), file=sys.stderr)
            return 2
        sessions = await store.revoke_console_sessions(tech.id)
        tokens = await store.revoke_tokens(tech.id)
        await store.set_password(tech.id, password)
        await store.records.audit_admin(
            "password_reset", actor=None, target=f"technician:{tech.id}"
        )
        print(t("user_password_reset", user=args.username, sessions=sessions, tokens=tokens))
    else:
        await store.disable_totp(tech.id)
        sessions = await store.revoke_console_sessions(tech.id)
        await store.records.audit_admin("totp_reset", actor=None, target=f"technician:{tech.id}")
        print(t("user_totp_reset", user=args.username, sessions=sessions))
    return 0


def _run_server(settings: Any) -> int:
    """Run the server; a database or listening problem at start is one line and exit 2."""
    import ssl

    from enkaku.server.app import serve, ssl_context
    from enkaku.server.store.db import DatabaseError

    try:
        ssl_context(settings)  # load the certificate and key once before anything starts
    except (OSError, ssl.SSLError) as exc:
        reason = (
            t("tls_not_pem")
            if isinstance(exc, ssl.SSLError)
            else (os.strerror(exc.errno) if exc.errno else str(exc))
        )
        print(
            t("tls_unusable", cert=settings.tls_cert, key=settings.tls_key, reason=reason),
            file=sys.stderr,
        )
        return 2
    ready = asyncio.Event()

    async def run() -> None:
        await serve(settings, ready=ready)

    try:
        asyncio.run(run())
    except DatabaseError as exc:
        print(f"enkaku server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if ready.is_set():  # not a start-up problem: let it show in full
            raise
        print(_start_error(exc, settings), file=sys.stderr)
        return 2
    return 0


def _missing_sqlite_file(db_url: str) -> Path | None:
    """The file a sqlite:/// URL names, if it does not exist (None otherwise)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:  # open_engine reports a bad URL in its own words
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return None if path.exists() else path


def _start_error(exc: OSError, settings: Any) -> str:
    """What stopped the server from listening, in one line."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return t("listen_failed", addr=f"{settings.host}:{settings.port}", reason=reason)


async def _admin(args: argparse.Namespace) -> int:
    from enkaku.server.settings import default_db_url
    from enkaku.server.store.db import DatabaseError, open_engine
    from enkaku.server.store.repo import Store, StoreError

    given = args.db_url or os.environ.get("ENKAKU_DB")
    missing = _missing_sqlite_file(given) if given and not args.create else None
    if missing is not None:
        # A mistyped path would silently become a new, empty database.
        print(t("db_missing", path=missing), file=sys.stderr)
        return 2
    try:
        store = Store(await open_engine(given or default_db_url()))
    except DatabaseError as exc:
        print(f"enkaku: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "admin" and args.area == "terms":
            from enkaku.server.terms import admin_terms

            return await admin_terms(store, args)
        if args.command == "admin":
            from enkaku.admin_cli import run as admin_run

            return await admin_run(store, args)
        status = await _old_admin(store, args)
        if status == 0:
            from enkaku.admin_cli import moved

            moved(args)
        return status
    except (StoreError, ValueError) as exc:
        print(f"enkaku: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()


async def _old_admin(store: Any, args: argparse.Namespace) -> int:
    """`enkaku user add|reset-password|reset-totp` and `enkaku contract add|list`, as
    before `enkaku admin` had them (`enkaku contract add --customer NAME` still creates
    the customer when there is none of that name)."""
    if args.command == "user" and args.action in ("reset-password", "reset-totp"):
        return await _reset_user(store, args)
    if args.command == "user":
        from enkaku.admin_cli import add_technician

        return await add_technician(store, args)
    if args.action == "add":
        until: date | None = args.valid_until
        await store.create_contract(
            args.code,
            args.customer,
            remote_support=not args.no_remote_support,
            valid_until=until,
        )
        print(t("contract_added", code=args.code))
    else:
        for c in await store.list_contracts():
            state = store.contract_serviceable(c) or "ok"
            print(f"{c.code}\t{c.customer_name}\t{c.valid_from}..{c.valid_until or ''}\t{state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
