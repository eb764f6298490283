"""`enkaku demo`: a server, a technician account, and an agent serving a virtual display,
all in one process (plus Xvfb and an xterm when there is no $DISPLAY).

The person running the demo is both the customer and the technician, so the demo agent
grants consent by itself and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from enkaku.agent.consent import AllowAll, Requester
from enkaku.agent.identity import DeviceKey
from enkaku.agent.main import screen_backends
from enkaku.agent.runtime import AgentRuntime
from enkaku.agent.services import FileSettings
from enkaku.agent.ui import printable_args, support_line
from enkaku.i18n import register, t
from enkaku.protocol.terms import Terms
from enkaku.server.app import build_app
from enkaku.server.settings import Settings
from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store
from enkaku.server.terms import terms_today

DEMO_USER = "demo"
#: The support company the demo's customer sees (a made-up one: --support-name's place).
DEMO_SUPPORT_NAME = "enkaku デモサポート"
DEMO_SUPPORT_PHONE = "0120-000-000"
#: The demo publishes a short terms version so that the terms step shows (it accepts it
#: itself, DemoUI.ask_terms).
DEMO_TERMS = (
    "demo-1",
    "Demo terms of use: this demo server and agent run on your own computer; nothing is "
    "sent elsewhere.",
    "デモ用の利用規約: このデモのサーバーとエージェントはお使いのコンピューター上で動作し、"
    "外部には何も送信しません。",
)

register(
    {
        "demo_terms_accepted": (
            "Terms of use version {version} accepted automatically (demo).",
            "利用規約 第 {version} 版に自動で同意しました (デモ)。",
        ),
        "demo_terms_upcoming": (
            "New terms of use (version {version}) take effect on {effective}.",
            "新しい利用規約 (第 {version} 版) が {effective} から有効になります。",
        ),
    }
)


class DemoError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The VNC port the demo suggests for `enkaku connect --vnc-listen` (display :1).
VNC_PORT = 5901


def suggested_vnc_port(preferred: int = VNC_PORT) -> int:
    """``preferred`` if it is free on loopback now, else a free port (a second demo, or a
    VNC server already on 5901, must not be told to use a busy port)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return _free_port()
    return preferred


def start_virtual_display(workdir: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """Xvfb on a free display number with an xterm on it."""
    for tool in ("Xvfb", "xterm"):
        if shutil.which(tool) is None:
            raise DemoError(
                f"{tool} is not installed: run scripts/bootstrap (apt-get install xvfb xterm)"
            )
    # Xvfb picks a free display number and writes it to the pipe once it accepts clients.
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
         "-nolisten", "tcp", "-noreset"],  # no reset when the last client leaves
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
    )  # fmt: skip
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            ready, _, _ = select.select([pipe], [], [], 30)
            line = pipe.readline() if ready else b""
        display = f":{int(line)}"
    except ValueError:
        xvfb.kill()
        xvfb.wait()
        raise DemoError("Xvfb did not start") from None
    env = dict(os.environ, DISPLAY=display)
    xterm = subprocess.Popen(
        ["xterm", "-geometry", "100x30+40+40", "-T", "enkaku demo"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return display, [xterm, xvfb]


class DemoUI:
    """Prints the demo's credentials (human text or JSON lines) as they change."""

    def __init__(self, info: dict[str, str], json_output: bool) -> None:
        self.info, self.json_output = info, json_output
        self.ready = asyncio.Event()

    def credentials(self, agent_id: str, password: str) -> None:
        first = not self.ready.is_set()
        self.info.update(agent_id=agent_id, agent_password=password)
        if self.json_output:
            line = (
                dict(self.info)
                if first
                else {"event": "credentials", "agent_id": agent_id, "agent_password": password}
            )
            print(json.dumps(line), flush=True)
        elif not first:
            print(f"\nNew one-time password / 新しいパスワード: {password}", flush=True)
        self.ready.set()

    def notice(self, key: str, **kwargs: object) -> None:
        from enkaku.i18n import t

        print(t(key, **printable_args(kwargs)), file=sys.stderr, flush=True)

    def session_started(self, who: Requester) -> None:
        print(
            f"Session active / セッション中: {who.label}",
            file=sys.stderr,
            flush=True,
        )

    def chat(self, who: Requester, text: str, at: str) -> None:
        from enkaku.i18n import printable, t

        line = t("agent_chat", at=printable(at, 40), who=who.label, text=printable(text, 4000))
        print(line, file=sys.stderr, flush=True)

    async def ask_terms(self, terms: Terms) -> bool:
        # The demo is its own customer: it accepts and says so (never a real agent's way).
        print(t("demo_terms_accepted", version=terms.version), file=sys.stderr, flush=True)
        return True

    def terms_upcoming(self, terms: Terms) -> None:
        line = t("demo_terms_upcoming", version=terms.version, effective=terms.effective)
        print(line, file=sys.stderr, flush=True)

    def activity(self, kind: str, info: dict[str, object]) -> None:
        """Nothing: the demo's terminal stays quiet while files move."""

    def support_contact(self, name: str, phone: str | None) -> None:
        print(support_line(name, phone), file=sys.stderr, flush=True)

    def session_ended(self, reason: str) -> None:
        from enkaku.i18n import reason_text

        print(
            f"Session ended / セッション終了: {reason_text(reason, 'en')} / {reason_text(reason, 'ja')}",
            file=sys.stderr,
            flush=True,
        )


async def _demo(json_output: bool, port: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="enkaku-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    runner = None
    try:
        display = os.environ.get("DISPLAY")
        if not display:
            display, procs = start_virtual_display(workdir)
        port = port or _free_port()
        settings = Settings(
            port=port, db_url=f"sqlite:///{workdir}/demo.db", node_id="demo",
            support_name=DEMO_SUPPORT_NAME, support_phone=DEMO_SUPPORT_PHONE,
            # Reports and the console show times as the demo's Japanese company would.
            time_zone="Asia/Tokyo",
        )  # fmt: skip
        store = Store(await open_engine(settings.db_url))
        login_password = secrets.token_urlsafe(12)
        await store.create_technician(
            DEMO_USER, login_password, display_name="Demo Technician", company="enkaku demo"
        )
        await store.create_contract("DEMO", "Demo customer / デモ顧客")
        version, text_en, text_ja = DEMO_TERMS
        today = terms_today()
        await store.publish_terms(version, today, text_en, text_ja, today=today)
        app = build_app(settings, store=store)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=3)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        server_url = settings.base_url
        info = {
            "server_url": server_url,
            "console_url": f"{server_url}/console/",
            "login": DEMO_USER,
            "login_password": login_password,
            "display": display,
            "consent": "automatic (demo)",
            "incoming": str(workdir / "incoming"),
        }
        ui = DemoUI(info, json_output)
        capture, injector, clipboard = screen_backends(display)
        agent = AgentRuntime(
            server_url,
            DeviceKey.load_or_create(workdir / "agent"),
            ui,
            consent=AllowAll(notice="consent_granted_demo"),
            capture_factory=capture,
            input_factory=injector,
            clipboard_factory=clipboard,
            # Files the technician sends land in the demo's own folder, not ~/Downloads.
            files=FileSettings(incoming=workdir / "incoming"),
        )
        agent_task = asyncio.create_task(agent.run())
        await asyncio.wait_for(ui.ready.wait(), 30)
        if not json_output:
            _print_banner(info)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent_task, 10)
        return 0
    except DemoError as exc:
        print(f"enkaku demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            await runner.cleanup()
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _command_name() -> str:
    """How the user runs enkaku: plain `enkaku` when that is on PATH, else its full path."""
    me = Path(sys.argv[0]).resolve()
    on_path = shutil.which("enkaku")
    if me.name == "enkaku" and (on_path is None or Path(on_path).resolve() != me):
        return str(me)
    return "enkaku"


def _print_banner(info: dict[str, str], vnc_port: int | None = None) -> None:
    server = info["server_url"]
    enkaku = _command_name()
    vnc = suggested_vnc_port() if vnc_port is None else vnc_port
    print(
        f"""
enkaku demo is running / enkaku デモ実行中 (Ctrl-C to stop / Ctrl-C で終了)

  Server / サーバー:          {server}
  Console / コンソール:       {info["console_url"]}
  Login / ログイン:           {info["login"]} / {info["login_password"]}
  Agent ID / エージェント ID:  {info["agent_id"]}
  Password / パスワード:      {info["agent_password"]}
  Display / 画面:             {info["display"]}
  Consent / 同意:             the demo agent allows every request by itself
                              デモのエージェントはすべての要求を自動で許可します

Open the console URL in a browser, sign in, and connect with the ID and password above.
ブラウザーでコンソールの URL を開いてサインインし、上の ID とパスワードで接続してください。

Connect from a terminal / 端末から接続:
  ENKAKU_LOGIN_PASSWORD={info["login_password"]} {enkaku} login --server {server} --user {info["login"]}
  ENKAKU_PASSWORD={info["agent_password"]} {enkaku} connect {info["agent_id"]} --vnc-listen 127.0.0.1:{vnc}
  xtigervncviewer 127.0.0.1::{vnc}
""",
        flush=True,
    )


def run_demo(*, json_output: bool = False, port: int = 0) -> int:
    return asyncio.run(_demo(json_output, port))
