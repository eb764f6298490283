"""The one-file agent's baked-in settings, and the zip application's entry point.

`scripts/build-agent` builds the agent as a zip application (shiv) per Python version and
adds a member ``enkaku-agent-build.json`` saying which Python it was built for. The
server (`enkaku.server.downloads`) serves a copy with one more member,
``enkaku-agent.json``: its own URL, the CA to trust when it uses a private one, and an
optional enrolment code from the download link. Appending a member to a zip needs no
rebuild, so one build serves every server and every customer link.

``python3 enkaku-agent-py311.pyz [ARGS]`` runs ``enkaku agent [ARGS]`` with ``--server``
(and ``--ca-file``) taken from that member unless ARGS name them. The Python check runs
before anything compiled is imported: a file built for another Python would otherwise
fail with an import error the customer cannot act on.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from enkaku.i18n import register, t

CONFIG_MEMBER = "enkaku-agent.json"
BUILD_MEMBER = "enkaku-agent-build.json"
#: A config member larger than this is not ours (a CA bundle is a few KiB).
MAX_MEMBER = 256 * 1024

register(
    {
        "preconfig_wrong_python": (
            "This file is for Python {built}, but this computer runs Python {running}.\n"
            "Download the file for Python {running} from the support company's page "
            "({page}) and start it with: python3 {name}",
            "このファイルは Python {built} 用ですが、このコンピューターの Python は "
            "{running} です。\nサポート会社のページ ({page}) から Python {running} 用の"
            "ファイルをダウンロードし、次のコマンドで起動してください: python3 {name}",
        ),
        "preconfig_unreadable": (
            "enkaku agent: the settings inside {path} are damaged ({error}); download the "
            "file again.",
            "enkaku agent: {path} 内の設定が壊れています ({error})。ファイルをもう一度"
            "ダウンロードしてください。",
        ),
    }
)


class PreconfigError(ValueError):
    """A member the zip carries is not valid JSON of the expected shape."""


@dataclass(frozen=True)
class PreConfig:
    """What the server baked into the download. Empty strings mean "not set"."""

    server: str = ""
    #: PEM CA certificate(s) the agent trusts for ``server`` (a private CA), or "".
    ca_pem: str = ""
    #: Enrolment code from the download link: passed on as ``--enrol`` (docs/records.md).
    code: str = ""

    def to_json(self) -> bytes:
        return json.dumps({k: v for k, v in asdict(self).items() if v}).encode()

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PreConfig:
        values = {k: data.get(k, "") for k in ("server", "ca_pem", "code")}
        if not all(isinstance(v, str) for v in values.values()):
            raise PreconfigError("server, ca_pem and code must be strings")
        return cls(**values)  # type: ignore[arg-type]


def archive_path() -> Path | None:
    """The zip application this process runs from (shiv runs ``python3 FILE.pyz``)."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if path is None or not path.is_file() or not zipfile.is_zipfile(path):
        return None
    return path


def read_member(archive: Path, name: str) -> dict[str, object] | None:
    """The JSON object stored as ``name`` in ``archive``, or None if there is none."""
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(name)
        except KeyError:
            return None
        if info.file_size > MAX_MEMBER:
            raise PreconfigError(f"{name} is too large")
        try:
            data = json.loads(zf.read(info))
        except (ValueError, UnicodeDecodeError) as exc:
            raise PreconfigError(f"{name}: {exc}") from None
    if not isinstance(data, dict):
        raise PreconfigError(f"{name} is not a JSON object")
    return data


def add_member(archive: Path, name: str, data: bytes) -> None:
    """Append ``name`` to ``archive`` (a fresh copy: a second append would duplicate it)."""
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)


def load(archive: Path | None) -> PreConfig:
    data = read_member(archive, CONFIG_MEMBER) if archive is not None else None
    return PreConfig() if data is None else PreConfig.from_json(data)


def _has_option(args: Sequence[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def agent_argv(args: Sequence[str], config: PreConfig, ca_file: Path | None) -> list[str]:
    """``enkaku agent`` arguments: the baked-in server and CA unless ``args`` name them."""
    argv = ["agent"]
    if config.server and not _has_option(args, "--server"):
        argv += ["--server", config.server]
    if ca_file is not None and not (
        _has_option(args, "--ca-file") or _has_option(args, "--insecure")
    ):
        argv += ["--ca-file", str(ca_file)]
    if config.code and not _has_option(args, "--enrol"):
        argv += ["--enrol", config.code]
    return argv + list(args)


def write_ca(pem: str, folder: Path) -> Path:
    """Store the baked-in CA where ``--ca-file`` can read it; replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "server-ca.pem"
    if target.is_file() and target.read_text(errors="replace") == pem:
        return target
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".server-ca.")
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def _python_mismatch(archive: Path, config: PreConfig) -> str | None:
    build = read_member(archive, BUILD_MEMBER)
    built = str(build.get("python", "")) if build else ""
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not built or built == running:
        return None
    page = (config.server.rstrip("/") + "/download/agent") if config.server else "/download/agent"
    name = f"enkaku-agent-py{running.replace('.', '')}.pyz"
    return t("preconfig_wrong_python", built=built, running=running, page=page, name=name)


def main() -> None:
    """The zip application's entry point: ``enkaku agent`` with the baked-in settings."""
    archive = archive_path()
    try:
        config = load(archive)
        mismatch = _python_mismatch(archive, config) if archive is not None else None
    except (OSError, zipfile.BadZipFile, PreconfigError) as exc:
        print(t("preconfig_unreadable", path=archive, error=exc), file=sys.stderr)
        sys.exit(2)
    if mismatch:
        print(mismatch, file=sys.stderr)
        sys.exit(2)
    ca_file = None
    if config.ca_pem:
        import platformdirs  # pure Python, like everything imported so far

        ca_file = write_ca(config.ca_pem, Path(platformdirs.user_config_dir("enkaku")) / "agent")
    from enkaku.cli import main as cli_main

    sys.exit(cli_main(agent_argv(sys.argv[1:], config, ca_file)))
