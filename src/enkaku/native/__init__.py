"""enkaku's compiled encoder core (``rfbcore.c``), loaded with ctypes when it is built.

The RFB encoders' inner loops are numpy (``enkaku.protocol.rfb.encodings``); on screens of
many small changes (a web page's spinner, a progress bar, a chart: a few rectangles an
update) their cost is mostly numpy's own per-call overhead, not pixels. In C: ZRLE's tile
loop (the same bytes as the numpy one), Tight's look at each 64×64 cell (the same
statistics and palettes as ``content.analyse``) and Tight's plan (the same rectangles,
palettes and palette indices as ``tight.plan`` and the numpy encoder's), all compared in
tests/protocol/rfb/test_native.py; in a fraction of the time (``docs/performance.md``,
"The compiled encoder core").

The library has no Python C API in it, so one build serves every Python version: it is
built by ``scripts/bootstrap`` and ``scripts/build-agent`` with the system's C compiler
(``python -m enkaku.native build``). Where it is not built (no compiler, another
platform), or with ``ENKAKU_NATIVE=0`` in the environment, ``LIB`` is None and the numpy
code runs: the same bytes, more CPU.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "rfbcore.c"
LIBRARY = HERE / "_rfbcore.so"
#: The compiler's flags: optimised, position independent. (The tests build it with
#: ``-Werror`` too; a user's newer compiler's new warnings do not stop a build.)
CFLAGS = ["-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra"]


#: The library's interface version (``ENKAKU_RFBCORE_VERSION`` in rfbcore.c): a build of
#: another version (a checkout updated since, a copied file) is not used.
VERSION = 3


def load(path: Path) -> ctypes.CDLL | None:
    """The library at ``path`` with its functions' signatures set, or None (with a
    warning) when it cannot be loaded or is of another interface version."""
    try:
        lib = ctypes.CDLL(str(path))
        version = lib.enkaku_rfbcore_version
        version.restype = ctypes.c_int
        found = version()
        if found != VERSION:
            log.warning(
                "the compiled encoder core is version %d, this code needs %d: using numpy "
                "until it is rebuilt (python -m enkaku.native build)", found, VERSION,
            )  # fmt: skip
            return None
        tiles = lib.enkaku_zrle_tiles
        cells = lib.enkaku_tight_cells
        plan = lib.enkaku_tight_plan
    except (OSError, AttributeError) as exc:  # another platform's build, an old or damaged file
        log.warning(
            "the compiled encoder core could not be loaded (%s): using numpy until it is "
            "rebuilt (python -m enkaku.native build)", exc,
        )  # fmt: skip
        return None
    tiles.restype = ctypes.c_int64
    tiles.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
    ]  # fmt: skip
    cells.restype = ctypes.c_int
    cells.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    cells.argtypes += [ctypes.c_void_p] * 5
    plan.restype = ctypes.c_int64
    plan.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    return lib


def _load() -> ctypes.CDLL | None:
    if os.environ.get("ENKAKU_NATIVE", "1") == "0" or not LIBRARY.exists():
        return None
    return load(LIBRARY)


LIB = _load()


def build(output: Path = LIBRARY, compiler: str | None = None, extra: tuple[str, ...] = ()) -> Path:
    """Compile ``rfbcore.c`` into ``output`` (a temporary name first, then renamed, so
    a failed build leaves no half-written library). Raises ``RuntimeError`` with the
    compiler's message when it fails, ``FileNotFoundError`` when there is none."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FileNotFoundError("no C compiler (cc or gcc) on PATH")
    partial = output.with_name(output.name + ".partial")
    done = subprocess.run(
        [cc, *CFLAGS, *extra, "-o", str(partial), str(SOURCE)], capture_output=True, text=True
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{cc} failed:\n{done.stderr.strip()}")
    partial.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    """``python -m enkaku.native build [OUTPUT]``: compile the library (only when it is
    missing or older than its source, unless ``--force``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in args
    args = [a for a in args if a != "--force"]
    if not args or args[0] != "build":
        print("usage: python -m enkaku.native build [--force] [OUTPUT]", file=sys.stderr)
        return 2
    output = Path(args[1]) if len(args) > 1 else LIBRARY
    fresh = output.exists() and output.stat().st_mtime >= SOURCE.stat().st_mtime
    if not force and fresh and (output != LIBRARY or LIB is not None):
        return 0
    try:
        build(output)
    except (FileNotFoundError, RuntimeError) as exc:
        print(
            f"enkaku.native: the compiled encoder core was not built ({exc}); the numpy "
            "encoders are used instead (same bytes, more CPU). Install a C compiler "
            "(Debian: apt-get install gcc) and run this again to build it.",
            file=sys.stderr,
        )
        return 1
    print(f"enkaku.native: built {output}", file=sys.stderr)
    return 0
