"""The support company's name and phone from a real server's flags, shown in the main
window under the ID and password, drawn, and relabelled by the language switch."""

from __future__ import annotations

import subprocess
import tkinter as tk
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import World, free_port, make_db, server_process
from tests.xdisplay import x_env

from .helpers import click, need, pump_until
from .test_e2e import credentials, window_agent

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

NAME, PHONE = "ACME サポート", "03-1234-5678"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        server_process(
            w, make_db(tmp_path), free_port(), "--support-name", NAME, "--support-phone", PHONE
        )
        yield w
    finally:
        w.close()


def test_the_main_window_shows_the_support_name_and_phone(
    world: World, root: tk.Tk, display: str, tmp_path: Path
) -> None:
    with window_agent(world, root, display):
        credentials(root)
        label = need(root, "support")
        pump_until(root, lambda: label.cget("text"), 60, "the support line")
        assert label.cget("text") == f"Support: {NAME}, phone {PHONE}"
        # Under the ID and password, in the bold font (not the small notice one).
        assert label.winfo_rooty() > need(root, "password").winfo_rooty()
        assert str(label.cget("font")) == str(need(root, "status").cget("font"))
        # Drawn: the label's pixels on the X server hold dark text on the light window.
        root.update()
        shot = tmp_path / "root.png"
        subprocess.run(["import", "-window", "root", str(shot)], env=x_env(display), check=True)
        x, y = label.winfo_rootx(), label.winfo_rooty()
        w, h = label.winfo_width(), label.winfo_height()
        pixels = np.asarray(Image.open(shot).convert("L"))[y : y + h, x : x + w]
        assert h >= 16 and pixels.min() < 60 and pixels.max() > 200
        click(display, need(need(root, "langs"), "lang_ja"))
        pump_until(root, lambda: label.cget("text").startswith("サポート窓口"), what="ja")
        assert label.cget("text") == f"サポート窓口: {NAME}、電話 {PHONE}"
