"""The agent window's screens over test fixtures, saved as PNGs (``scripts/screenshots``).

    .venv/bin/python -m tests.agent.window.screens OUT_DIR [--lang ja|en]

Runs a private Xvfb, draws the main window, the terms of use, a consent dialog and the
session banner with made-up figures, and saves each window with ImageMagick's
``import``. Look at the result: a box instead of a kana or a cut-off label is a bug.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tkinter as tk
from datetime import date
from pathlib import Path

from enkaku.agent.consent import Question, Requester
from enkaku.agent.window.banner import Banner
from enkaku.agent.window.consentdialog import ConsentDialog, PauseControl
from enkaku.agent.window.fonts import Fonts, setup
from enkaku.agent.window.lang import Lang
from enkaku.agent.window.mainwindow import MainWindow
from enkaku.agent.window.termsdialog import TermsDialog
from enkaku.protocol.terms import Terms
from tests.xdisplay import x_env, xvfb

from .helpers import FakeSession, loop_thread, pump_until

WHO = Requester("佐藤 健", "ミライ技研サポート")
QUESTION = Question(
    WHO,
    ("file_to_customer",),
    {"name": "プリンタードライバー.deb", "size": 12_345_678, "dest": "/home/hanako/ダウンロード"},
    "プリンターの修理のためドライバーを入れます",
)
TERMS = Terms(
    version="2027-01",
    published=date(2026, 11, 1),
    effective=date(2027, 1, 1),
    text={
        "ja": "第1条 (目的)\nこの規約は、リモートサポートサービスの利用条件を定めます。\n\n"
        "第2条 (お客様の立ち会い)\nお客様はセッション中、コンピューターの前にいてください。\n\n"
        "第3条 (バックアップ)\n大切なデータは事前にバックアップしてください。\n",
        "en": "Art. 1 (Purpose)\nThese terms set out how the remote support service is used.\n",
    },
)


def main_window(root: tk.Tk, fonts: Fonts, lang: Lang) -> MainWindow:
    """The main window with an ID, a password, the support company, the status online and
    two notices."""
    win = MainWindow(root, fonts, lang, on_new_password=lambda: None, on_close=root.destroy)
    win.show_credentials("123456789", "k7dq-m2xa")
    win.show_support("サポート株式会社", "03-1234-5678")
    win.show_status("window_status_online", server="https://support.example.jp")
    win.add_notice("agent_wrong_attempt", attempt=1, limit=3)
    return win


def capture(root: tk.Misc, toplevel: tk.Wm, out: Path, display: str) -> None:
    """Save ``toplevel`` as it is drawn on the X server."""
    pump_until(root, toplevel.winfo_viewable, what="the window mapped")
    root.update()  # every pending redraw
    subprocess.run(
        ["import", "-window", toplevel.wm_frame(), str(out)],
        env=x_env(display), check=True, timeout=60,
    )  # fmt: skip


def render(out_dir: Path, lang_code: str = "ja") -> list[Path]:
    """Draw each screen in ``lang_code`` and save it; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with xvfb(1024, 768) as display:
        root = tk.Tk(screenName=display, className="enkaku")
        try:
            fonts, lang = setup(root), Lang(lang_code)
            main_window(root, fonts, lang)
            path = out_dir / f"agent-main-{lang_code}.png"
            capture(root, root, path, display)
            written.append(path)
            root.withdraw()

            # The same window on a server that requires enrolment: the code field.
            enrol = tk.Toplevel(root)
            win = MainWindow(enrol, fonts, lang, on_new_password=lambda: None,  # type: ignore[arg-type]
                             on_close=enrol.destroy, on_enrol=lambda _code: None)  # fmt: skip
            win.show_credentials("123456789", "k7dq-m2xa")
            win.show_status("window_status_online", server="https://support.example.jp")
            win.ask_enrolment(True)
            win.add_notice("window_enrolment_required")
            win.enrol_entry.insert(0, "K7QD-9XMF-2HWR-T4PB")
            path = out_dir / f"agent-enrol-{lang_code}.png"
            capture(root, enrol, path, display)
            written.append(path)
            enrol.destroy()

            terms = TermsDialog(root, fonts, lang, TERMS, lambda _yes: None)
            path = out_dir / f"agent-terms-{lang_code}.png"
            capture(root, terms.top, path, display)
            written.append(path)
            terms.close()

            dialog = ConsentDialog(
                root, fonts, lang, QUESTION, lambda _yes: None, timeout=60, remind=True
            )
            path = out_dir / f"agent-consent-{lang_code}.png"
            capture(root, dialog.top, path, display)
            written.append(path)
            dialog.close()

            session = FakeSession(sent=48_213_377, received=1_904_211)
            session.grants.actions.append("clipboard")
            with loop_thread(root) as bridge:
                banner = Banner(
                    root, fonts, lang, bridge, WHO, session, PauseControl(),
                    clock=_Clock(754.0),
                )  # fmt: skip
                banner.add_chat(WHO.name, "画面を拝見します。少々お待ちください。", "10:02")
                pump_until(root, lambda: banner.snap.sent == session.sent, what="figures")
                path = out_dir / f"agent-banner-{lang_code}.png"
                capture(root, banner.top, path, display)
                written.append(path)
                banner.close()
        finally:
            root.destroy()
    return written


class _Clock:
    """A clock whose second reading is ``later`` seconds after the first."""

    def __init__(self, later: float) -> None:
        self.readings = iter([0.0])
        self.later = later

    def __call__(self) -> float:
        return next(self.readings, self.later)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNGs")
    parser.add_argument("--lang", choices=("ja", "en"), default="ja")
    args = parser.parse_args(argv)
    for path in render(args.out, args.lang):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
