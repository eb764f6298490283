"""Application workloads of ``benchmarks/screen.py``: browser pages (scrolled plain, as a
documentation site, by a mouse wheel), a web dashboard, dialogs and a terminal process
monitor on Xvfb, a window dragged diagonally on Xvfb and on sway.

* ``browser``: Debian's Chromium (``/usr/bin/chromium``, never a downloaded one) as an
  app window of a fixed size and place, showing a generated local page (seeded: Japanese
  and English paragraphs, headings, tables, small photo-like images made with pillow, in
  Noto Sans/Serif CJK JP). The page scrolls itself by ``SCROLL_STEP`` px every
  ``1/SCROLL_RATE`` s (``window.scrollTo`` with ``behavior: 'instant'``, smooth scrolling
  off, the step taken from the clock so a late timer skips rather than slows down),
  wrapping to the top at the end. It sets its title to ``benchbrowser`` only once it has
  loaded and is about to scroll: the benchmark waits for that title on a visible window.
  A throw-away profile (``--user-data-dir`` in the benchmark's temporary folder) per start;
  the browser runs in its own session and is stopped as a process group.
* ``dialogs``: a Tk "application" window (a toolbar, a file table, a status bar; static)
  over which message dialogs (a ``Toplevel`` with an icon-like shape, a Japanese and an
  English line, two buttons) open and close at seeded places, ``DIALOG_RATE`` a second,
  each shown for ``DIALOG_SHOWN`` of its period.
* ``windiag``: a terminal (``DRAG_SIZE`` characters; DejaVu Sans Mono, Noto Sans Mono
  CJK JP for the wide characters on X11, the latter on sway) showing a
  Japanese and English page (``drag_text``) dragged diagonally as a hand drags a window:
  ``DRAG_RATE`` steps a second, each with dx and dy both non-zero and varied
  (``drag_path``: about the slope of ``DRAG_BOX``'s diagonal, now and then one axis
  backwards for a step), back and forth inside ``DRAG_BOX``. On X11 by one chained
  ``xdotool windowmove --sync`` (no window manager), on sway through its IPC
  (``swaydrag``: ``[app_id=benchdiag] move position X Y`` on one connection, on the
  clock). Both get the same seeded path.
* ``pan``: a Tk canvas (``PAN_GEOMETRY``) showing a map-like drawing (a grid of streets,
  coloured blocks with Japanese and English labels) panned both ways as a hand drags a
  map, ``PAN_RATE`` steps a second, each moving the view by ``drag_path``'s steps (dx and
  dy both non-zero and varied, back and forth): what a map, a drawing or a zoomed page
  does inside one window, which no X event names.

* ``docs``: ``browser``'s page laid out as a documentation site: a fixed header and a
  fixed sidebar of links beside the text that scrolls (the sidebar is inside the damaged
  box Chromium reports, and does not move). ``wheel``: the docs page scrolled as by a
  mouse wheel, ``WHEEL_STEP`` px twice a second with Chromium's smooth scrolling on (its
  animation, steps of varying size).
* ``dashboard``: Debian's Chromium as for ``browser``, showing a monitoring page
  (``dashboard_page``): a header with a spinner and a clock, six metric cards, a progress
  bar, a line chart of three series and a log table, in Japanese and English. Small
  changes far apart on every step (Chromium reports the bounding box of what it drew:
  the spinner and the bar are one damaged box of 1000×186 px), from a seeded generator on
  one clock, so every server sees the same pixels.
* ``tui``: an xterm (``TUI_SIZE``) showing a process monitor as ``htop`` draws one
  (``tui``, seeded): per-CPU and memory bars, tasks, load and a ticking uptime, and the
  processes sorted by CPU with the first highlighted; ``TUI_RATE`` refreshes a second,
  each, as curses does, rewriting only each row's span from its first to its last changed
  cell. The screen an administrator watches on a server in trouble: small changes all
  over a terminal, rows that reorder rather than scroll.

All stay clear of the base xterm (top left), where the latency keys go.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import psutil

CHROMIUM = "/usr/bin/chromium"
BROWSER_GEOMETRY = (600, 110, 1280, 900)  # x, y, width, height of the window
SCROLL_STEP = 20  # px
SCROLL_RATE = 30.0  # steps per second (one every 33.3 ms)
WHEEL_STEP = 300  # px a wheel turn scrolls (smoothly)
WHEEL_EVERY = 15  # steps between wheel turns (two a second)
DIALOG_APP_GEOMETRY = (640, 140, 1200, 820)
DIALOG_SIZE = (480, 170)
DIALOG_RATE = 4.0  # dialogs opened (and closed) per second
DIALOG_SHOWN = 0.6  # share of each period a dialog is open
DRAG_SIZE = (80, 26)  # columns, rows of the dragged terminal
#: Where the terminal's top left corner goes: x0, y0, x1, y1. It is about 730x500 px on
#: X11 and 640x600 on sway, so it stays on the 1920x1080 screen.
DRAG_BOX = (560, 60, 1100, 460)
DRAG_RATE = 30.0  # steps per second
DRAG_SEED = 17
PAN_GEOMETRY = (560, 120, 1000, 700)  # x, y, width, height of the window
PAN_RATE = 30.0  # steps per second

JA_SENTENCES = [
    "リモートサポートの接続には、お客様の同意が必要です。",
    "画面の共有を開始すると、担当者があなたの画面を見ることができます。",
    "ファイルの転送は暗号化され、サーバーには内容が保存されません。",
    "設定を変更した後は、アプリケーションを再起動してください。",
    "この操作は取り消すことができません。続行しますか。",
    "ネットワークの状態が不安定な場合、画質を自動的に下げます。",
    "管理者は月ごとのセッション記録を確認できます。",
    "キーボードの入力は、接続中のみ相手のコンピューターに送られます。",
    "証明書の有効期限が近づいています。更新の手続きを行ってください。",
    "バックアップは毎日午前二時に自動で実行されます。",
    "プリンターのドライバーを最新の版に更新しました。",
    "ご不明な点がございましたら、サポート窓口までお問い合わせください。",
]
EN_WORDS = [
    "the", "remote", "session", "screen", "update", "encoder", "tile", "region", "client",
    "server", "agent", "consent", "network", "latency", "frame", "buffer", "pixel", "keyboard",
    "pointer", "clipboard", "transfer", "audit", "report", "technician", "customer",
    "contract", "certificate", "window", "desktop", "display", "scroll", "browser",
]  # fmt: skip
JA_HEADINGS = [
    "概要", "接続の手順", "画面の共有", "ファイル転送", "セキュリティ", "よくある質問",
    "トラブルシューティング", "管理者向けの設定", "月次レポート", "更新履歴",
]  # fmt: skip
EN_HEADINGS = ["Overview", "How to connect", "Screen sharing", "File transfer", "Security",
               "FAQ", "Troubleshooting", "Settings for administrators", "Monthly report",
               "Change log"]  # fmt: skip


def _en_sentence(rnd: random.Random) -> str:
    words = [rnd.choice(EN_WORDS) for _ in range(rnd.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def _png(rnd: random.Random, width: int = 320, height: int = 180) -> str:
    """A small photo-like PNG (smooth colour field, a few shapes) as a data URI."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(rnd.getrandbits(32))
    low = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
    img = low.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rnd.randrange(width - 60), rnd.randrange(height - 40)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        draw.ellipse((x, y, x + rnd.randint(20, 60), y + rnd.randint(20, 40)), fill=colour)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def browser_page(
    folder: Path,
    seconds: float,
    seed: int = 11,
    sections: int = 30,
    docs: bool = False,
    wheel: bool = False,
) -> Path:
    """Write the seeded page (the same bytes for every seed) and return its path.
    ``docs``: as a documentation site lays it out, a fixed header and a fixed sidebar of
    links beside the text that scrolls (its title ``benchdocs``). ``wheel``: the docs
    page scrolled as by a mouse wheel, ``WHEEL_STEP`` px every ``WHEEL_EVERY`` steps with
    the browser's smooth scrolling (an animation of steps of varying size; its title
    ``benchwheel``)."""
    docs = docs or wheel
    rnd = random.Random(seed)
    parts: list[str] = []
    for i in range(sections):
        k = i % len(JA_HEADINGS)
        parts.append(f"<h2>{i + 1}. {JA_HEADINGS[k]} / {EN_HEADINGS[k]}</h2>")
        for _ in range(rnd.randint(2, 3)):
            ja = "".join(rnd.choice(JA_SENTENCES) for _ in range(rnd.randint(2, 5)))
            parts.append(f"<p>{html.escape(ja)}</p>")
            en = " ".join(_en_sentence(rnd) for _ in range(rnd.randint(2, 4)))
            parts.append(f'<p class="en">{html.escape(en)}</p>')
        if i % 4 == 1:
            rows = "".join(
                f"<tr><td>{rnd.randint(1000, 9999)}</td><td>{rnd.choice(JA_HEADINGS)}</td>"
                f"<td>{rnd.choice(EN_WORDS)}</td><td class=num>{rnd.randint(0, 99999):,}</td>"
                f"<td>2026-11-{rnd.randint(1, 29):02d}</td></tr>"
                for _ in range(6)
            )
            parts.append(
                "<table><tr><th>番号 / No.</th><th>項目 / Item</th><th>種別 / Kind</th>"
                f"<th>件数 / Count</th><th>日付 / Date</th></tr>{rows}</table>"
            )
        if i % 3 == 2:
            parts.append(
                f'<figure><img src="{_png(rnd)}" width=320 height=180 alt="">'
                f"<figcaption>図 {i + 1} / Figure {i + 1}</figcaption></figure>"
            )
    chrome, margin, title = "", "24px 48px", "benchbrowser"
    scroll = 'window.scrollTo({top: (n * STEP) % max, behavior: "instant"});'
    if docs:
        headings = itertools.cycle(zip(JA_HEADINGS, EN_HEADINGS, strict=True))
        links = "".join(
            f"<a>{i + 1}. {ja} / {en}</a>"
            for i, (ja, en) in zip(range(sections), headings, strict=False)
        )
        chrome = (
            f'<div id="top">enkaku ドキュメント / Documentation</div><div id="side">{links}</div>'
        )
        margin, title = "80px 48px 24px 290px", "benchwheel" if wheel else "benchdocs"
    if wheel:
        scroll = (
            f"if (n % {WHEEL_EVERY} === 0) window.scrollTo({{top: "
            f'((n / {WHEEL_EVERY}) * {WHEEL_STEP}) % max, behavior: "smooth"}});'
        )
    page = f"""<!DOCTYPE html>
<html lang="ja" translate="no"><head><meta charset="utf-8">
<meta name="google" content="notranslate"><title>loading</title>
<style>
html {{ scroll-behavior: auto; }}
body {{ margin: {margin}; font: 16px/1.7 "Noto Sans CJK JP", sans-serif; color: #222;
        background: #fdfdfb; }}
#top {{ position: fixed; top: 0; left: 0; right: 0; height: 56px; padding: 12px 24px;
        box-sizing: border-box; background: #1d3557; color: #fff; font-size: 20px; }}
#side {{ position: fixed; top: 56px; left: 0; bottom: 0; width: 250px; padding: 12px;
         box-sizing: border-box; overflow: hidden; background: #eef1f5; }}
#side a {{ display: block; padding: 5px 8px; color: #1d3557; }}
h1 {{ font: bold 30px "Noto Serif CJK JP", serif; color: #1d3557;
      border-bottom: 3px solid #457b9d; }}
h2 {{ font: bold 22px "Noto Serif CJK JP", serif; color: #1d3557; margin-top: 1.6em; }}
p.en {{ color: #444; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #999; padding: 4px 12px; }}
th {{ background: #a8dadc; }}
td.num {{ text-align: right; }}
figure {{ margin: 1em 0; }}
figcaption {{ font-size: 13px; color: #666; }}
</style></head><body>
{chrome}<h1>遠隔サポートの手引き / Remote support guide</h1>
{"".join(parts)}
<script>
const STEP = {SCROLL_STEP}, PERIOD = 1000 / {SCROLL_RATE}, SECONDS = {seconds:.1f};
let t0 = 0, last = 0;
function tick() {{
  const n = Math.floor((performance.now() - t0) / PERIOD);
  if (n * PERIOD > SECONDS * 1000) return;
  if (n !== last) {{
    last = n;
    const max = document.documentElement.scrollHeight - window.innerHeight;
    {scroll}
  }}
  setTimeout(tick, Math.max(1, t0 + (n + 1) * PERIOD - performance.now()));
}}
window.addEventListener("load", () => requestAnimationFrame(() => {{
  document.title = "{title}";
  t0 = performance.now();
  setTimeout(tick, PERIOD);
}}));
</script>
</body></html>
"""
    path = folder / ("docs.html" if docs else "page.html")
    path.write_text(page, encoding="utf-8")
    return path


DASHBOARD_RATE = 30.0  # the spinner's and the progress bar's steps per second


def dashboard_page(folder: Path, seconds: float, seed: int = 23) -> Path:
    """Write the dashboard page (a monitoring screen that animates in several small
    places, as web applications do) and return its path. Every change is a step of one
    clock, ``DASHBOARD_RATE`` a second, from a seeded generator, so each server sees the
    same pixels: a spinner turns 12 degrees and a progress bar grows a step every step; a
    line chart of three series shifts by one sample every third step; six metric cards
    change their values and a log table gains a row at its top (the others pushed down)
    every fifteenth; a clock ticks every thirtieth. The page stops changing after
    ``seconds``."""
    cards = "".join(
        f'<div class="card"><div class="label">{ja} / {en}</div>'
        f'<div class="value" id="v{i}">-</div></div>'
        for i, (ja, en) in enumerate([
            ("CPU 使用率", "CPU"), ("メモリ", "Memory"), ("ディスク", "Disk"),
            ("接続数", "Sessions"), ("応答時間", "Latency"), ("エラー", "Errors"),
        ])
    )  # fmt: skip
    messages = [
        (ja, en)
        for ja, en in zip(JA_SENTENCES, [
            "Customer consent is required.", "Screen sharing started.",
            "The transfer is encrypted.", "Restart the application.",
            "This cannot be undone.", "Quality lowered on a slow link.",
            "Monthly records are ready.", "Keys go to the remote computer.",
            "The certificate expires soon.", "Backup finished.", "Printer driver updated.",
            "Contact the support desk.",
        ], strict=True)
    ]  # fmt: skip
    rows = ",".join(f"[{_js(ja)},{_js(en)}]" for ja, en in messages)
    page = f"""<!DOCTYPE html>
<html lang="ja" translate="no"><head><meta charset="utf-8">
<meta name="google" content="notranslate"><title>loading</title>
<style>
body {{ margin: 0; font: 14px/1.5 "Noto Sans CJK JP", sans-serif; color: #1e2a36;
        background: #eef1f5; }}
header {{ display: flex; align-items: center; gap: 16px; padding: 10px 20px;
          background: #1d3557; color: #fff; font-size: 18px; }}
header .clock {{ margin-left: auto; font: 16px "DejaVu Sans Mono", monospace; }}
.cards {{ display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px;
          padding: 14px 20px 0; }}
.card {{ background: #fff; border-radius: 8px; padding: 10px 14px;
         box-shadow: 0 1px 3px rgba(0,0,0,.15); }}
.card .label {{ color: #5c6b7a; font-size: 12px; }}
.card .value {{ font-size: 26px; font-weight: bold; color: #1d3557; }}
.panel {{ margin: 14px 20px 0; background: #fff; border-radius: 8px; padding: 10px 14px;
          box-shadow: 0 1px 3px rgba(0,0,0,.15); }}
.bar {{ height: 12px; background: #dde3ea; border-radius: 6px; overflow: hidden; }}
.bar div {{ height: 100%; width: 0; background: linear-gradient(90deg, #457b9d, #2a9d8f); }}
table {{ width: 100%; border-collapse: collapse; }}
td {{ padding: 3px 8px; border-bottom: 1px solid #e3e7ec; white-space: nowrap; }}
td.t {{ font-family: "DejaVu Sans Mono", monospace; color: #5c6b7a; width: 90px; }}
</style></head><body>
<header><canvas id="spin" width="28" height="28"></canvas>
<span>サーバー監視 / Server monitor</span><span class="clock" id="clock">--:--:--</span>
</header>
<div class="cards">{cards}</div>
<div class="panel"><div>同期の進捗 / Sync progress</div>
<div class="bar"><div id="bar"></div></div></div>
<div class="panel"><canvas id="chart" width="1200" height="260"></canvas></div>
<div class="panel"><table id="log"></table></div>
<script>
const RATE = {DASHBOARD_RATE}, PERIOD = 1000 / RATE, SECONDS = {seconds:.1f}, SEED = {seed};
const MESSAGES = [{rows}];
let s = SEED >>> 0;
function rnd() {{  // mulberry32: the same numbers in every run
  s = (s + 0x6D2B79F5) >>> 0; let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}}
const spin = document.getElementById("spin").getContext("2d");
const chart = document.getElementById("chart").getContext("2d");
const series = [[], [], []], COLOURS = ["#e63946", "#457b9d", "#2a9d8f"], SAMPLES = 120;
for (const line of series) {{ let v = 50; for (let i = 0; i < SAMPLES; i++) line.push(v); }}
const log = document.getElementById("log");
for (let i = 0; i < 12; i++) log.insertRow(-1).innerHTML = "<td></td><td></td>";
function two(n) {{ return String(n).padStart(2, "0"); }}
function clock(seconds) {{  // the page's time: 10:00:00 at its start
  const t = 36000 + seconds;
  return `${{two(Math.floor(t / 3600) % 24)}}:${{two(Math.floor(t / 60) % 60)}}:${{two(t % 60)}}`;
}}
function drawSpinner(n) {{
  spin.clearRect(0, 0, 28, 28);
  spin.lineWidth = 4; spin.strokeStyle = "#a8dadc";
  spin.beginPath(); spin.arc(14, 14, 10, 0, 2 * Math.PI); spin.stroke();
  spin.strokeStyle = "#ffffff"; spin.beginPath();
  const a = n * Math.PI / 15; spin.arc(14, 14, 10, a, a + 1.6); spin.stroke();
}}
function drawChart() {{
  chart.fillStyle = "#fff"; chart.fillRect(0, 0, 1200, 260);
  chart.strokeStyle = "#e3e7ec"; chart.lineWidth = 1;
  for (let y = 40; y <= 240; y += 40) {{
    chart.beginPath(); chart.moveTo(40, y + 0.5); chart.lineTo(1190, y + 0.5); chart.stroke();
  }}
  chart.fillStyle = "#5c6b7a"; chart.font = "11px 'DejaVu Sans'";
  for (let y = 40, v = 100; y <= 240; y += 40, v -= 20) chart.fillText(String(v), 8, y + 4);
  series.forEach((line, k) => {{
    chart.strokeStyle = COLOURS[k]; chart.lineWidth = 2; chart.beginPath();
    line.forEach((v, i) => {{
      const x = 40 + i * 1150 / (SAMPLES - 1), y = 240 - v * 2;
      if (i) chart.lineTo(x, y); else chart.moveTo(x, y);
    }});
    chart.stroke();
  }});
}}
function step(n) {{
  drawSpinner(n);
  document.getElementById("bar").style.width = ((n % 300) / 3).toFixed(2) + "%";
  if (n % 3 === 0) {{
    for (const line of series) {{
      const last = line[line.length - 1];
      line.shift(); line.push(Math.max(5, Math.min(95, last + (rnd() - 0.5) * 12)));
    }}
    drawChart();
  }}
  if (n % 15 === 0) {{
    ["%", " GB", "%", "", " ms", ""].forEach((unit, i) => {{
      const v = i === 1 ? (4 + rnd() * 12).toFixed(1) : Math.floor(rnd() * (i === 3 ? 400 : 100));
      document.getElementById("v" + i).textContent = v + unit;
    }});
    const [ja, en] = MESSAGES[Math.floor(rnd() * MESSAGES.length)];
    const row = log.insertRow(0);
    row.innerHTML = `<td class="t">${{clock(Math.floor(n / RATE))}}</td><td>${{ja}} / ${{en}}</td>`;
    log.deleteRow(-1);
  }}
  if (n % RATE === 0) document.getElementById("clock").textContent = clock(n / RATE);
}}
let t0 = 0, last = 0;
function tick() {{
  const n = Math.floor((performance.now() - t0) / PERIOD);
  if (n * PERIOD > SECONDS * 1000) return;
  while (last < n) step(++last);  // a late timer catches up: every run draws the same
  setTimeout(tick, Math.max(1, t0 + (n + 1) * PERIOD - performance.now()));
}}
window.addEventListener("load", () => requestAnimationFrame(() => {{
  step(0);
  document.title = "benchdash";
  t0 = performance.now();
  setTimeout(tick, PERIOD);
}}));
</script>
</body></html>
"""
    path = folder / "dashboard.html"
    path.write_text(page, encoding="utf-8")
    return path


def _js(text: str) -> str:
    """``text`` as a JavaScript string literal (HTML-escaped: it is put into cells)."""
    return json.dumps(html.escape(text), ensure_ascii=False)


def chromium_cmd(page: Path, profile: Path, smooth: bool = False) -> list[str]:
    """Chromium showing ``page`` as an app window; ``smooth``: with its smooth scrolling
    (the default of a desktop's browser), else without."""
    x, y, w, h = BROWSER_GEOMETRY
    return [
        CHROMIUM, f"--user-data-dir={profile}", f"--app=file://{page}",
        f"--window-position={x},{y}", f"--window-size={w},{h}", "--ozone-platform=x11",
        "--no-sandbox", "--test-type", "--no-first-run", "--no-default-browser-check",
        "--disable-gpu", *([] if smooth else ["--disable-smooth-scrolling"]),
        "--force-device-scale-factor=1",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-features=Translate,MediaRouter",
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows", "--password-store=basic",
        "--lang=ja", "--disable-breakpad", "--disable-crash-reporter",
    ]  # fmt: skip


def stop_group(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop a child started in its own session and every process of its group (by the
    group's ID, which is the child's PID): SIGTERM, then SIGKILL for what is left."""
    pgid = proc.pid

    def members() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            proc.poll()
            if proc.returncode is not None and not members():
                break
            time.sleep(0.05)
        else:
            continue
        break
    if proc.poll() is None:
        proc.wait()


def remove_profile(profile: Path) -> None:
    shutil.rmtree(profile, ignore_errors=True)


def dialogs(rate: float, seconds: float, seed: int) -> None:
    """The dialog workload (a subcommand): a static window, dialogs opening and closing
    over it at ``rate`` a second at seeded places."""
    import tkinter as tk

    rnd = random.Random(seed)
    ax, ay, aw, ah = DIALOG_APP_GEOMETRY
    dw, dh = DIALOG_SIZE
    font = ("Noto Sans CJK JP", 11)
    root = tk.Tk()
    root.withdraw()
    root.title("benchdialogs")
    root.geometry(f"{aw}x{ah}+{ax}+{ay}")
    root.configure(background="#f0f0f0")
    bar = tk.Frame(root, background="#dde3ea", height=40)
    bar.pack(fill="x")
    for label in ("開く / Open", "保存 / Save", "送信 / Send", "設定 / Settings", "ヘルプ / Help"):
        tk.Label(bar, text=label, font=font, background="#dde3ea", padx=14, pady=6).pack(
            side="left"
        )
    table = tk.Frame(root, background="#ffffff")
    table.pack(fill="both", expand=True, padx=10, pady=10)
    heads = ("名前 / Name", "更新日時 / Modified", "種類 / Kind", "サイズ / Size")
    for c, head in enumerate(heads):
        tk.Label(table, text=head, font=(font[0], 11, "bold"), background="#a8dadc",
                 anchor="w", padx=8).grid(row=0, column=c, sticky="ew")  # fmt: skip
        table.columnconfigure(c, weight=1)
    kinds = ("文書 / Document", "表計算 / Sheet", "画像 / Image", "フォルダー / Folder")
    for r in range(1, 26):
        ext = rnd.choice(["docx", "xlsx", "png", "pdf"])
        name = f"{rnd.choice(JA_HEADINGS)}_{rnd.randint(1, 999):03d}.{ext}"
        when = f"2026-11-{rnd.randint(1, 29):02d} {rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}"
        cells = (name, when, rnd.choice(kinds), f"{rnd.randint(1, 9999):,} KB")
        bg = "#ffffff" if r % 2 else "#f4f7fa"
        for c, cell in enumerate(cells):
            tk.Label(table, text=cell, font=font, background=bg, anchor="w", padx=8).grid(
                row=r, column=c, sticky="ew"
            )
    status = tk.Label(root, text="準備完了 / Ready", font=font, anchor="w", background="#dde3ea")
    status.pack(fill="x", side="bottom")
    root.deiconify()
    root.update()
    messages = [
        ("ファイルを保存しました。", "The file was saved."),
        ("接続が切断されました。再接続しますか？", "The connection was lost. Reconnect?"),
        ("この操作は取り消せません。", "This cannot be undone."),
        ("更新プログラムがあります。", "An update is available."),
        ("印刷が完了しました。", "Printing has finished."),
        ("パスワードの有効期限が切れます。", "Your password expires soon."),
    ]
    icons = (("#2a7de1", "i"), ("#e0a100", "!"), ("#c0392b", "×"), ("#2e9e5b", "?"))
    period = 1.0 / rate
    start = time.monotonic()
    state: dict[str, Any] = {"n": 0, "win": None}

    def open_dialog() -> None:
        n = state["n"]
        if time.monotonic() - start > seconds:
            root.destroy()
            return
        x = ax + rnd.randrange(40, aw - dw - 40)
        y = ay + rnd.randrange(60, ah - dh - 40)
        ja, en = rnd.choice(messages)
        colour, glyph = rnd.choice(icons)
        win = tk.Toplevel(root, background="#fafafa", borderwidth=2, relief="ridge")
        win.title("benchdialog")
        win.geometry(f"{dw}x{dh}+{x}+{y}")
        icon = tk.Canvas(win, width=56, height=56, background="#fafafa", highlightthickness=0)
        icon.create_oval(4, 4, 52, 52, fill=colour, outline="")
        icon.create_text(28, 28, text=glyph, fill="white", font=(font[0], 22, "bold"))
        icon.place(x=20, y=24)
        tk.Label(win, text=f"{ja}\n{en}", font=font, background="#fafafa", justify="left",
                 anchor="w").place(x=92, y=22, width=dw - 110)  # fmt: skip
        buttons = tk.Frame(win, background="#fafafa")
        tk.Button(buttons, text="OK", font=font, width=8).pack(side="left", padx=6)
        tk.Button(buttons, text="キャンセル / Cancel", font=font).pack(side="left", padx=6)
        buttons.place(relx=1.0, rely=1.0, x=-14, y=-14, anchor="se")
        state["win"] = win
        at = start + (n + DIALOG_SHOWN) * period
        root.after(max(1, int((at - time.monotonic()) * 1000)), close_dialog)

    def close_dialog() -> None:
        state["win"].destroy()
        state["win"] = None
        state["n"] += 1
        at = start + state["n"] * period
        root.after(max(1, int((at - time.monotonic()) * 1000)), open_dialog)

    open_dialog()
    root.mainloop()


def _cells(text: str) -> int:
    """Terminal columns of ``text`` (wide and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _wrap(text: str, cols: int) -> list[str]:
    """``text`` cut into lines of at most ``cols`` columns (at spaces when there are some)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" ") if " " in text else list(text):
        sep = " " if line and " " in text else ""
        if _cells(line + sep + word) <= cols:
            line += sep + word
            continue
        if line:
            lines.append(line)
        line = word
    if line:
        lines.append(line)
    return lines


def drag_text(cols: int, rows: int, seed: int = DRAG_SEED) -> str:
    """The dragged terminal's page (seeded): a heading, Japanese and English paragraphs
    wrapped short of ``cols``, ``rows`` lines at most (one less when the last would be
    blank) and no newline at the end: a terminal of ``rows`` lines does not scroll."""
    rnd = random.Random(seed)
    lines = [f"{JA_HEADINGS[0]} / {EN_HEADINGS[0]}", "=" * (cols - 4)]
    while len(lines) < rows:
        ja = "".join(rnd.choice(JA_SENTENCES) for _ in range(rnd.randint(1, 2)))
        en = " ".join(_en_sentence(rnd) for _ in range(rnd.randint(1, 2)))
        lines += [*_wrap(ja, cols - 2), *_wrap(en, cols - 2), ""]
    return "\n".join(lines[:rows]).rstrip("\n")


def drag_path(
    steps: int, box: tuple[int, int, int, int] = DRAG_BOX, seed: int = DRAG_SEED
) -> list[tuple[int, int]]:
    """``steps`` places of a window's top left corner dragged by hand along ``box``'s
    diagonal, back and forth (seeded): from (x0, y0), each step dx of 4-10 px and dy of
    about the diagonal's slope times that (0.6-1.4 of it), both non-zero, now and then
    (one step in seven) one of them backwards; at a side of the box the drag turns."""
    x0, y0, x1, y1 = box
    slope = (y1 - y0) / (x1 - x0)
    rnd = random.Random(seed)
    x, y, sx, sy = x0, y0, 1, 1
    out = [(x, y)]
    while len(out) < steps:
        dx = rnd.randint(4, 10)
        dy = max(1, round(dx * slope * rnd.uniform(0.6, 1.4)))
        wobble = rnd.random() < 1 / 7
        flip_x = wobble and rnd.random() < 0.5
        flip_y = wobble and not flip_x
        nx = x + sx * dx * (-1 if flip_x else 1)
        ny = y + sy * dy * (-1 if flip_y else 1)
        if not (x0 <= nx <= x1 and y0 <= ny <= y1):
            sx, sy = -sx, -sy  # a side of the box: the drag turns back
            continue
        x, y = nx, ny
        out.append((x, y))
    return out


def swaydrag(ipc: str, app_id: str, seconds: float, rate: float = DRAG_RATE) -> None:
    """Move the floating window ``app_id`` along ``drag_path`` at ``rate`` steps a second
    (a subcommand): sway IPC ``move position`` on one connection, each step at its time
    on the clock (a late step is not made up: the next place is taken)."""
    from benchmarks.screen_wayland import _ipc_on

    path = drag_path(int(seconds * rate) + 1)
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(ipc)
        while (i := int((time.monotonic() - start) * rate)) < len(path):
            x, y = path[i]
            _ipc_on(s, f'[app_id="{app_id}"] move position {x} {y}')
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))


def pan(seconds: float, seed: int) -> None:
    """The pan workload (a subcommand): a map-like canvas panned diagonally on the clock
    (``PAN_RATE`` steps a second, the steps of ``drag_path``) until ``seconds`` passed."""
    import tkinter as tk

    rnd = random.Random(seed)
    x0, y0, w, h = PAN_GEOMETRY
    size = (3600, 2600)
    root = tk.Tk()
    root.withdraw()
    root.title("benchpan")
    root.geometry(f"{w}x{h}+{x0}+{y0}")
    canvas = tk.Canvas(root, width=w, height=h, background="#eef1e6", highlightthickness=0,
                       xscrollincrement=1, yscrollincrement=1,
                       scrollregion=(0, 0, *size))  # fmt: skip
    canvas.pack(fill="both", expand=True)
    for x in range(0, size[0], 90):
        canvas.create_line(x, 0, x, size[1], fill="#c9cfbb", width=3 if x % 450 == 0 else 1)
    for y in range(0, size[1], 90):
        canvas.create_line(0, y, size[0], y, fill="#c9cfbb", width=3 if y % 450 == 0 else 1)
    colours = ("#d9534f", "#2a7de1", "#2e9e5b", "#e0a100", "#8e5cc2")
    for k in range(600):
        bx, by = rnd.randrange(0, size[0] - 80), rnd.randrange(0, size[1] - 60)
        canvas.create_rectangle(bx, by, bx + rnd.randrange(24, 70), by + rnd.randrange(16, 40),
                                fill=rnd.choice(colours), outline="")  # fmt: skip
        label = f"{rnd.choice(JA_HEADINGS)} {k}" if k % 2 else f"Block {k}"
        canvas.create_text(bx, by - 8, text=label, anchor="w", font=("Noto Sans CJK JP", 9))
    start = (size[0] - w) // 2, (size[1] - h) // 2
    canvas.xview_moveto(start[0] / size[0])
    canvas.yview_moveto(start[1] / size[1])
    path = drag_path(int((seconds + 5) * PAN_RATE))
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(path)]
    began = time.monotonic()
    state = {"n": 0}

    def step() -> None:
        due = int((time.monotonic() - began) * PAN_RATE)
        if time.monotonic() - began > seconds or state["n"] >= len(steps):
            root.destroy()
            return
        while state["n"] < min(due + 1, len(steps)):  # a late timer catches up
            dx, dy = steps[state["n"]]
            canvas.xview_scroll(dx, "units")
            canvas.yview_scroll(dy, "units")
            state["n"] += 1
        at = began + state["n"] / PAN_RATE
        root.after(max(1, int((at - time.monotonic()) * 1000)), step)

    root.deiconify()
    root.update()
    root.after(int(1000 / PAN_RATE), step)
    root.mainloop()


# -- tui: a process monitor in a terminal ------------------------------------------------

#: The terminal's size for ``tui`` (columns, rows) and its refreshes a second (``top -d
#: 0.25``; htop's default is 1.5 s, so a quicker one gives a short run enough changes).
TUI_SIZE = (150, 45)
TUI_RATE = 4.0
TUI_CPUS = 8
TUI_PROCESSES = 60
_TUI_USERS = ["root", "www-data", "postgres", "tanaka", "sato", "backup", "customer"]
_TUI_COMMANDS = [
    "/usr/sbin/sshd -D", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main",
    "postgres: checkpointer", "postgres: walwriter", "nginx: worker process",
    "/usr/bin/python3 /srv/請求書/集計.py --月次", "rsync -a /home/ /mnt/バックアップ/",
    "/usr/lib/systemd/systemd-journald", "/usr/sbin/cron -f", "java -Xmx2g -jar 在庫管理.jar",
    "/usr/bin/dockerd -H fd://", "containerd-shim-runc-v2 -namespace moby",
    "/usr/sbin/smbd --foreground", "php-fpm: pool www", "/usr/bin/redis-server 127.0.0.1:6379",
    "node /opt/受付システム/server.js", "/usr/lib/xorg/Xorg :0", "clamd --foreground",
    "/usr/sbin/rsyslogd -n", "bash ./夜間バッチ.sh", "tar czf /tmp/ログ.tar.gz /var/log",
]  # fmt: skip
_SGR = {"": "0", "green": "32", "red": "31", "blue": "34", "cyan": "36", "bold": "1",
        "head": "30;46", "sel": "30;46", "key": "30;46", "dim": "2"}  # fmt: skip


def _tui_cells(text: str, attr: str = "") -> list[tuple[str, str]]:
    """Terminal cells of ``text``: a wide (CJK) character takes two, its second empty."""
    out: list[tuple[str, str]] = []
    for ch in text:
        out.append((ch, attr))
        if unicodedata.east_asian_width(ch) in "WF":
            out.append(("", attr))
    return out


def _tui_line(parts: list[tuple[str, str]], cols: int) -> list[tuple[str, str]]:
    """One screen row from (text, attribute) parts, cut or padded to ``cols`` cells."""
    cells = [c for text, attr in parts for c in _tui_cells(text, attr)]
    cells = cells[:cols]
    if cells and cells[-1][0] and unicodedata.east_asian_width(cells[-1][0]) in "WF":
        cells[-1] = (" ", cells[-1][1])  # half a wide character does not fit
    fill = parts[-1][1] if parts and parts[-1][1] in ("head", "sel") else ""
    return cells + [(" ", fill)] * (cols - len(cells))


def _tui_frame(rnd: random.Random, state: dict[str, Any], t: float) -> list[list[tuple[str, str]]]:
    """The monitor's screen at ``t`` seconds: per-CPU and memory bars, tasks, load and
    uptime, and the processes sorted by CPU (values walk at random; rows reorder)."""
    cols, rows = TUI_SIZE
    cpus, procs = state["cpus"], state["procs"]
    for i in range(len(cpus)):
        cpus[i] = min(100.0, max(0.5, cpus[i] + rnd.uniform(-12, 12)))
    screen = []
    half = cols // 2
    for r in range(TUI_CPUS // 2):
        line: list[tuple[str, str]] = []
        for c in (r, r + TUI_CPUS // 2):
            busy = cpus[c]
            width = half - 14
            user = int(width * busy * 0.7 / 100)
            kernel = int(width * busy * 0.3 / 100)
            line += [(f"{c + 1:3d}", "cyan"), ("[", "bold"), ("|" * user, "green"),
                     ("|" * kernel, "red"), (" " * (width - user - kernel), ""),
                     (f"{busy:5.1f}%", "dim"), ("]", "bold"), ("  ", "")]  # fmt: skip
        screen.append(_tui_line(line, cols))
    state["mem"] = min(15.0, max(2.0, state["mem"] + rnd.uniform(-0.05, 0.06)))
    width = half - 22
    used = int(width * state["mem"] / 15.5)
    up = int(state["uptime"] + t)
    tasks = f"   Tasks: {len(procs) + 127}, 612 thr; {rnd.randint(1, 4)} running"
    screen.append(_tui_line([("  Mem", "cyan"), ("[", "bold"), ("|" * used, "green"),
                             (" " * (width - used), ""), (f"{state['mem']:.2f}G/15.5G", "dim"),
                             ("]", "bold"), (tasks, "")], cols))  # fmt: skip
    load = state["load"]
    for i in range(3):
        load[i] = max(0.0, load[i] + rnd.uniform(-0.08, 0.08) / (i + 1))
    screen.append(_tui_line([("  Swp", "cyan"), ("[", "bold"), (" " * width, ""),
                             ("0K/2.00G", "dim"), ("]", "bold"),
                             (f"   Load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", ""),
                             (f"   Uptime: {up // 86400} days, {up // 3600 % 24:02d}:"
                              f"{up // 60 % 60:02d}:{up % 60:02d}", "")], cols))  # fmt: skip
    screen.append(_tui_line([("", "")], cols))
    screen.append(_tui_line([("    PID USER       PRI  NI  VIRT   RES   SHR S  CPU% MEM%"
                              "    TIME+  Command", "head")], cols))  # fmt: skip
    for p in procs:
        p["cpu"] = max(0.0, min(99.9, p["cpu"] * rnd.uniform(0.7, 1.3) + rnd.uniform(-0.3, 0.5)))
        p["time"] += p["cpu"] / 100 / TUI_RATE
    shown = sorted(procs, key=lambda p: -p["cpu"])[: rows - len(screen) - 1]
    for i, p in enumerate(shown):
        tm = p["time"]
        attr = "sel" if i == 0 else ""
        state_char = "R" if p["cpu"] > 5 else "S"
        screen.append(_tui_line([(
            f"{p['pid']:7d} {p['user']:<9.9} {p['pri']:4d} {p['ni']:3d} {p['virt']:>5} "
            f"{p['res']:>5} {p['shr']:>5} {state_char} {p['cpu']:5.1f} {p['mem']:4.1f} "
            f"{int(tm // 60):3d}:{tm % 60:05.2f}  ", attr), (p["cmd"], attr or "")],
            cols))  # fmt: skip
    keys = ["Help", "Setup", "Search", "Filter", "Tree", "SortBy", "Nice -", "Nice +",
            "Kill", "Quit"]  # fmt: skip
    bar: list[tuple[str, str]] = []
    for n, k in enumerate(keys, 1):
        bar += [(f"F{n}", "bold"), (f"{k:<6}", "key")]
    screen.append(_tui_line(bar, cols))
    return screen


def _tui_write(old: list[list[tuple[str, str]]] | None, new: list[list[tuple[str, str]]]) -> str:
    """What a curses program writes to turn ``old`` into ``new``: per changed row, the
    cursor moved to its first changed cell and the cells up to its last changed one,
    with their attributes."""
    out = []
    for y, row in enumerate(new):
        if old is not None and old[y] == row:
            continue
        first, last = 0, len(row) - 1
        if old is not None:
            while row[first] == old[y][first]:
                first += 1
            while row[last] == old[y][last]:
                last -= 1
        while first > 0 and row[first][0] == "":
            first -= 1  # the start of a wide character
        out.append(f"\x1b[{y + 1};{first + 1}H")
        attr = None
        for ch, a in row[first : last + 1]:
            if a != attr:
                out.append(f"\x1b[0;{_SGR[a]}m" if a else "\x1b[0m")
                attr = a
            out.append(ch)
    out.append("\x1b[0m")
    return "".join(out)


def tui(rate: float, seconds: float, seed: int, frames: int | None = None) -> None:
    """A process monitor as ``htop`` draws one, seeded, ``rate`` refreshes a second
    (a subcommand run in the xterm) for ``seconds`` or ``frames`` refreshes: only the
    changed part of each row is rewritten."""
    rnd = random.Random(seed)
    procs = [
        {"pid": rnd.randint(300, 99999), "user": rnd.choice(_TUI_USERS),
         "pri": 20, "ni": rnd.choice([0, 0, 0, 5, -5]),
         "virt": f"{rnd.randint(10, 9000)}M", "res": f"{rnd.randint(2, 900)}M",
         "shr": f"{rnd.randint(1, 90)}M", "cpu": rnd.uniform(0, 30) ** 1.3 / 10,
         "mem": rnd.uniform(0, 8), "time": rnd.uniform(0, 5000),
         "cmd": rnd.choice(_TUI_COMMANDS)}
        for _ in range(TUI_PROCESSES)
    ]  # fmt: skip
    state: dict[str, Any] = {
        "cpus": [rnd.uniform(5, 60) for _ in range(TUI_CPUS)], "procs": procs,
        "mem": 6.0, "load": [1.2, 0.9, 0.7], "uptime": 12 * 86400 + 11655,
    }  # fmt: skip
    sys.stdout.write("\x1b[?25l\x1b[2J")  # no cursor, a clear screen
    start = time.monotonic()
    previous = None
    i = 0
    while time.monotonic() - start < seconds and (frames is None or i < frames):
        frame = _tui_frame(rnd, state, i / rate)
        sys.stdout.write(_tui_write(previous, frame))
        sys.stdout.flush()
        previous = frame
        i += 1
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
