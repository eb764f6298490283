"""Screen connections opened and closed at the same time in one process (issue 10).

Two technicians' screen streams (or one that hangs up and comes back at once) open and
close their X11 capture and input in worker threads at the same moment. libXext's
per-extension display lists made that corrupt the heap (malloc aborted the agent in
XOpenDisplay or XShmQueryExtension) until x11lib.SETUP_LOCK serialised opening and
closing. The churn runs in a child process: a corrupted heap aborts the process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.xdisplay import xvfb

pytestmark = pytest.mark.x11

CHURN = r"""
import sys, threading
from enkaku.agent.capture.base import Rect
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.input.x11 import X11Input

display, rounds = sys.argv[1], int(sys.argv[2])
failures = []

def churn():
    try:
        for _ in range(rounds):
            capture, injector = X11Capture(display), X11Input(display)
            capture.grab_rects([Rect(0, 0, 64, 64)])
            injector.close()
            capture.close()
    except Exception as exc:
        failures.append(repr(exc))

threads = [threading.Thread(target=churn) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("failures:", failures)
sys.exit(1 if failures else 0)
"""


def test_captures_and_inputs_opened_and_closed_at_once_in_threads() -> None:
    with xvfb(640, 480) as display:
        done = subprocess.run(
            [sys.executable, "-c", CHURN, display, "40"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    # Before the lock: "malloc(): unaligned fastbin chunk detected" and SIGABRT (-6).
    assert done.returncode == 0, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    assert "malloc" not in done.stderr
