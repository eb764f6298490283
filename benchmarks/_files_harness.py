"""What `benchmarks.files` starts besides the product: a private Xvfb with an xterm, a
throw-away OpenSSH server as the scp peer, and the product chain with its own runtime
folder (so `enkaku session ...` finds exactly the session this benchmark holds).

Everything is started here and stopped by PID; nothing is looked up by name. The Xvfb
start is the same as tests/xdisplay.py's (no benchmark imports from tests/); the product
chain is `benchmarks.e2e_chain.Chain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .e2e_chain import CLK_TCK, Chain, wait_port

SSHD = "/usr/sbin/sshd"
#: Debian's sshd refuses to start as root without its privilege-separation folder.
PRIVSEP_DIR = Path("/run/sshd")


class HarnessError(RuntimeError):
    """Something the benchmark needs did not start; the message says what to install."""


def stop_popen(proc: subprocess.Popen[Any]) -> None:
    """Stop a child by its PID: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def need(program: str, package: str) -> str:
    """The path of ``program``, or a HarnessError naming the Debian package."""
    path = shutil.which(program)
    if path is None:
        raise HarnessError(f"{program} is not installed: apt-get install -y {package}")
    return path


# -- X display and xterm --------------------------------------------------------------


@dataclass
class Desktop:
    """A private Xvfb (the display number is chosen by Xvfb itself) and one xterm."""

    workdir: Path
    width: int = 1024
    height: int = 768
    display: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        """Xvfb via -displayfd (ready when it reports), then an xterm running sh."""
        xvfb = need("Xvfb", "xvfb")
        need("xterm", "xterm")
        need("xdotool", "xdotool")
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{self.width}x{self.height}x24",
             "-nolisten", "tcp", "-noreset", "+extension", "MIT-SHM", "+extension", "DAMAGE",
             "+extension", "XTEST"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
        )  # fmt: skip
        self.procs.append(proc)
        os.close(write_fd)
        number = b""
        try:
            deadline = time.monotonic() + 30
            while not number.endswith(b"\n"):
                ready, _, _ = select.select([read_fd], [], [], max(0, deadline - time.monotonic()))
                chunk = os.read(read_fd, 16) if ready else b""
                if not chunk:
                    raise HarnessError("Xvfb did not report a display number within 30 s")
                number += chunk
        finally:
            os.close(read_fd)
        self.display = f":{int(number)}"
        env = dict(os.environ, DISPLAY=self.display, PS1="$ ")
        self.procs.append(
            subprocess.Popen(
                ["xterm", "-geometry", "80x24+10+10", "-e", "sh"],
                cwd=self.workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = subprocess.run(
                ["xdotool", "search", "--class", "xterm"], env=env, capture_output=True
            )
            if found.returncode == 0:
                return
            time.sleep(0.1)
        raise HarnessError(f"no xterm window on {self.display} within 60 s")

    def stop(self) -> None:
        """xterm first, then Xvfb, by PID."""
        for proc in reversed(self.procs):
            stop_popen(proc)


# -- the scp peer ---------------------------------------------------------------------


@dataclass
class SshPeer:
    """Debian's sshd on a free loopback port with a throw-away host key, client key and
    config file of its own; scp logs in as the current user with the client key."""

    workdir: Path
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    made_privsep: bool = False

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_ed25519"

    def ssh_options(self) -> list[str]:
        """Options for ssh and scp: only our key, no known_hosts, no user config."""
        return [
            "-F", "/dev/null", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def scp(self, source: str, target: str) -> list[str]:
        """scp SOURCE TARGET; a remote path is written ``remote:/path``."""
        fix = [s.replace("remote:", "127.0.0.1:", 1) for s in (source, target)]
        return ["scp", "-q", "-P", str(self.port), *self.ssh_options(), *fix]

    def ssh(self, *command: str, verbose: bool = False) -> list[str]:
        """ssh to the peer running ``command``."""
        extra = ["-v"] if verbose else []
        return ["ssh", *extra, "-p", str(self.port), *self.ssh_options(), "127.0.0.1", *command]

    async def start(self, port: int) -> None:
        """Keys, authorized_keys, sshd_config; sshd -D -e until it accepts connections."""
        if not os.access(SSHD, os.X_OK):
            raise HarnessError(f"{SSHD} is missing: apt-get install -y openssh-server")
        need("scp", "openssh-client")
        self.port = port
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        host_key = self.workdir / "host_ed25519"
        for key in (host_key, self.client_key):
            await run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        config = self.workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AllowUsers {getpass.getuser()}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    # OpenSSH 9 scp speaks SFTP by default.
                    "Subsystem sftp /usr/lib/openssh/sftp-server",
                    "",
                ]
            )
        )
        self.made_privsep = make_privsep_dir()
        log = (self.workdir / "sshd.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                SSHD, "-D", "-e", "-f", str(config),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        try:
            await wait_port(port, 30, self.proc)
        except Exception as exc:
            raise HarnessError(f"sshd did not start: {exc}; log:\n{self.log_tail()}") from None

    def log_tail(self) -> str:
        path = self.workdir / "sshd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    async def ciphers(self) -> list[str]:
        """The negotiated kex lines (cipher, MAC, compression) of one ``ssh true``."""
        proc = await asyncio.create_subprocess_exec(
            *self.ssh("true", verbose=True),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise HarnessError(
                f"ssh to the peer failed ({proc.returncode}): {err.decode(errors='replace')}"
                f"\nsshd log:\n{self.log_tail()}"
            )
        lines = err.decode(errors="replace").splitlines()
        return [line.split("kex: ", 1)[1] for line in lines if "cipher:" in line]

    def cpu_seconds(self) -> float:
        """sshd's CPU with that of its children it has reaped (utime, stime, cutime,
        cstime of /proc/PID/stat): the whole server side of the finished copies."""
        if self.proc is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat[stat.rindex(")") + 2 :].split()
        return sum(int(x) for x in fields[11:15]) / CLK_TCK  # fields 14-17 of stat

    async def wait_idle(self, limit: float = 10) -> None:
        """Until sshd has no child left (the last connection's processes were reaped)."""
        if self.proc is None:
            return
        for _ in range(int(limit / 0.02)):  # /proc has no event to wait for
            if not has_children(self.proc.pid):
                return
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """sshd by its PID (SIGTERM, SIGKILL after 5 s); our privsep folder if we made it."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self.made_privsep:
            with contextlib.suppress(OSError):
                os.rmdir(PRIVSEP_DIR)


def has_children(pid: int) -> bool:
    """Whether ``pid`` has a child process (/proc/PID/task/PID/children)."""
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().strip())
    except OSError:
        return False


def make_privsep_dir() -> bool:
    """Create /run/sshd as Debian's init script does, when root and it is missing;
    whether it was made here (then it is removed at the end)."""
    if os.geteuid() != 0 or os.path.exists(PRIVSEP_DIR):
        return False
    os.mkdir(PRIVSEP_DIR, 0o755)
    return True


async def run_checked(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run a short command; its stdout, or a HarnessError with its output."""
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise HarnessError(
            f"{' '.join(args[:4])} ... failed ({proc.returncode}): {err.decode(errors='replace')}"
        )
    return out.decode(errors="replace")


# -- the product ----------------------------------------------------------------------


@dataclass
class FilesChain(Chain):
    """e2e_chain's server + agent + `connect --vnc-listen`, with XDG_RUNTIME_DIR set to a
    private folder of ours: the control socket of `enkaku connect` lands there and
    `enkaku session ...` run with the same environment finds only this session."""

    run_dir: Path = Path()

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env["XDG_RUNTIME_DIR"] = str(self.run_dir)
        env["ENKAKU_LANG"] = "en"
        return env

    def session_command(self, *args: str) -> list[str]:
        """Command line for ``enkaku session ARGS`` (the CLI the technician types)."""
        return [sys.executable, "-m", "enkaku.cli", "session", *args]
