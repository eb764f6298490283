"""What a system information report means: findings a technician and a customer can
read, each with the numbers that triggered it.

Pure functions of the report's sections (no IO), one per finding kind; a section that
could not be read yields no finding (its own ``why`` says so). Thresholds are the
module constants, listed with their reasons in docs/system-info.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from enkaku.i18n import both, register

DISK_WARNING = 90.0  # percent used, strictly above
DISK_CRITICAL = 97.0
MEMORY_WARNING = 10.0  # percent available, strictly below
MEMORY_CRITICAL = 5.0
SWAP_PAGES_PER_S = 100.0  # pages swapped in + out per second while sampling
PRESSURE_FULL_AVG10 = 10.0  # percent of the last 10 s all tasks stalled on memory
CLOCK_WARNING = 60.0  # seconds, absolute, strictly above
CLOCK_CRITICAL = 300.0  # TLS and Kerberos start failing around five minutes
BATTERY_WARNING = 15.0  # percent, strictly below, on battery only
BATTERY_CRITICAL = 5.0

SEVERITIES = ("critical", "warning", "info")

register(
    {
        "sysinfo_f_disk_full": (
            "File system {mount} is {percent}% full",
            "ファイルシステム {mount} の使用率が {percent}% です",
        ),
        "sysinfo_f_disk_full_x": (
            "Only {free_h} is left on {mount}. Programs fail to save files, updates fail and "
            "the system may stop working when it is full. Delete or move large files.",
            "{mount} の空き容量は {free_h} しかありません。満杯になるとファイルの保存や更新が"
            "失敗し、システムが動かなくなることがあります。大きなファイルを削除するか移動してください。",
        ),
        "sysinfo_f_inodes_full": (
            "File system {mount} has used {percent}% of its file slots (inodes)",
            "ファイルシステム {mount} のファイル管理領域 (inode) の使用率が {percent}% です",
        ),
        "sysinfo_f_inodes_full_x": (
            "New files cannot be created once the slots run out, even with free space left. "
            "Usually a folder holds millions of small files (caches, mail queues, sessions).",
            "空き容量があっても、inode が尽きると新しいファイルを作れません。多くの場合、"
            "キャッシュやメールキューなど大量の小さなファイルが原因です。",
        ),
        "sysinfo_f_memory_low": (
            "Only {percent}% of memory is available",
            "利用可能なメモリが {percent}% しかありません",
        ),
        "sysinfo_f_memory_low_x": (
            "Programs may become slow or be stopped by the system. Close programs that are not "
            "needed, or add memory.",
            "プログラムが遅くなったり、システムに強制終了されたりすることがあります。"
            "不要なプログラムを閉じるか、メモリを増設してください。",
        ),
        "sysinfo_f_swapping": (
            "The system is short of memory and swapping",
            "メモリ不足のためスワップが発生しています",
        ),
        "sysinfo_f_swapping_x": (
            "Memory is being moved to and from disk, which makes everything slow. Find the "
            "program using most memory in the process list.",
            "メモリの内容をディスクとの間で移動しているため、全体が遅くなります。"
            "プロセス一覧でメモリを最も使っているプログラムを確認してください。",
        ),
        "sysinfo_f_services_failed": (
            "{count} system service(s) failed",
            "{count} 個のシステムサービスが失敗しています",
        ),
        "sysinfo_f_services_failed_x": (
            "These services stopped with an error: {units}. Their log (journalctl -u NAME) "
            "says why.",
            "次のサービスがエラーで停止しました: {units}。理由はログ (journalctl -u 名前) で"
            "確認できます。",
        ),
        "sysinfo_f_no_default_route": (
            "No default route: this machine cannot reach other networks",
            "デフォルトルートがありません: 他のネットワークに接続できません",
        ),
        "sysinfo_f_no_default_route_x": (
            "Without a default gateway only the local network is reachable. Check the network "
            "cable or Wi-Fi and the network settings (DHCP).",
            "デフォルトゲートウェイがないため、ローカルネットワークにしか接続できません。"
            "ケーブルや Wi-Fi、ネットワーク設定 (DHCP) を確認してください。",
        ),
        "sysinfo_f_no_dns": (
            "No DNS server is configured",
            "DNS サーバーが設定されていません",
        ),
        "sysinfo_f_no_dns_x": (
            "Names such as web addresses cannot be looked up, so most internet services fail. "
            "Check the network settings.",
            "Web アドレスなどの名前を解決できないため、ほとんどのインターネットサービスが"
            "使えません。ネットワーク設定を確認してください。",
        ),
        "sysinfo_f_server_unreachable": (
            "The support server {host}:{port} cannot be reached directly",
            "サポートサーバー {host}:{port} に直接接続できません",
        ),
        "sysinfo_f_server_unreachable_x": (
            "A direct connection failed ({error}). A firewall or proxy may block it; the "
            "support session may need a proxy setting.",
            "直接接続に失敗しました ({error})。ファイアウォールやプロキシが遮断している可能性が"
            "あります。プロキシ設定が必要な場合があります。",
        ),
        "sysinfo_f_clock_skew": (
            "The clock is {seconds} s off",
            "時計が {seconds} 秒ずれています",
        ),
        "sysinfo_f_clock_skew_x": (
            "Compared with the support server's clock. A wrong clock breaks secure websites, "
            "logins and updates. Turn on automatic time synchronisation (NTP).",
            "サポートサーバーの時計と比べた結果です。時計がずれていると、安全な Web サイトや"
            "ログイン、更新が失敗します。時刻の自動同期 (NTP) を有効にしてください。",
        ),
        "sysinfo_f_kernel_crash": (
            "The kernel reported {count} serious error(s) ({kinds})",
            "カーネルが重大なエラーを {count} 件報告しました ({kinds})",
        ),
        "sysinfo_f_kernel_crash_x": (
            "The core of the system hit an error in the last days. Faulty hardware (memory) "
            "or a driver is a common cause; the latest was at {time}.",
            "最近、システムの中核でエラーが発生しました。メモリなどのハードウェアやドライバーの"
            "不具合がよくある原因です。最新は {time} です。",
        ),
        "sysinfo_f_app_crash": (
            "{count} program crash(es) in the last days",
            "最近 {count} 件のプログラムのクラッシュがありました",
        ),
        "sysinfo_f_app_crash_x": (
            "These programs stopped abnormally: {names}. Repeated crashes of one program point "
            "to a bug or a damaged installation.",
            "次のプログラムが異常終了しました: {names}。同じプログラムが繰り返し落ちる場合は、"
            "不具合かインストールの破損が考えられます。",
        ),
        "sysinfo_f_smart_failed": (
            "Disk {disk} reports that it is failing",
            "ディスク {disk} が故障の兆候を報告しています",
        ),
        "sysinfo_f_smart_failed_x": (
            "The disk's own self-check failed. Back up important data now and replace the disk.",
            "ディスク自身の自己診断が失敗しました。今すぐ重要なデータをバックアップし、"
            "ディスクを交換してください。",
        ),
        "sysinfo_f_smart_sectors": (
            "Disk {disk} has damaged areas",
            "ディスク {disk} に損傷した領域があります",
        ),
        "sysinfo_f_smart_sectors_x": (
            "The disk has replaced or cannot read some sectors. This often gets worse; make sure "
            "backups are current and plan to replace the disk.",
            "ディスクの一部のセクターが代替済みか読み取れません。悪化することが多いため、"
            "バックアップを確認し、ディスクの交換を検討してください。",
        ),
        "sysinfo_f_security_updates": (
            "{count} security update(s) are waiting",
            "{count} 件のセキュリティ更新が未適用です",
        ),
        "sysinfo_f_security_updates_x": (
            "Known security holes are fixed by these updates; install them soon. The package "
            "lists were last refreshed at {when}.",
            "既知の脆弱性がこれらの更新で修正されます。早めに適用してください。"
            "パッケージ一覧の最終更新: {when}",
        ),
        "sysinfo_f_battery_low": (
            "Battery at {percent}% and not charging",
            "バッテリー残量 {percent}% で充電されていません",
        ),
        "sysinfo_f_battery_low_x": (
            "Connect the charger so the machine does not switch off during the support session.",
            "サポート中に電源が切れないよう、充電器を接続してください。",
        ),
        "sysinfo_f_overheating": (
            "{sensor} is at {current} °C",
            "{sensor} が {current} °C になっています",
        ),
        "sysinfo_f_overheating_x": (
            "The hardware's own limit is {limit} °C. Check fans and air vents for dust; "
            "overheating makes the machine slow down or switch off.",
            "ハードウェアの上限は {limit} °C です。ファンや通気口のほこりを確認してください。"
            "過熱すると動作が遅くなったり電源が切れたりします。",
        ),
        "sysinfo_f_reboot_required": (
            "A restart is needed to finish installing updates",
            "更新の適用を完了するには再起動が必要です",
        ),
        "sysinfo_f_reboot_required_x": (
            "Some updates only take effect after the machine restarts.",
            "一部の更新は再起動後に有効になります。",
        ),
    }
)


@dataclass(frozen=True)
class Finding:
    """One thing worth a technician's attention, with the numbers behind it."""

    id: str
    severity: str  # "critical" | "warning" | "info"
    title: dict[str, str]  # {"en": ..., "ja": ...}
    explanation: dict[str, str]
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finding(kind: str, severity: str, evidence: dict[str, Any], **kw: object) -> Finding:
    return Finding(
        kind, severity, both(f"sysinfo_f_{kind}", **kw), both(f"sysinfo_f_{kind}_x", **kw), evidence
    )


def data(report: dict[str, Any], name: str) -> Any:
    """A section's data, or None when it is missing or could not be read."""
    sections = report.get("sections")
    section = sections.get(name) if isinstance(sections, dict) else None
    if isinstance(section, dict) and section.get("ok") is True:
        return section.get("data")
    return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _level(value: float, warning: float, critical: float) -> str | None:
    """``critical`` / ``warning`` for a value strictly above the marks, else None."""
    if value > critical:
        return "critical"
    return "warning" if value > warning else None


def disk_full(report: dict[str, Any]) -> Iterator[Finding]:
    for fs in data(report, "storage") or []:
        if fs.get("image") or fs.get("percent") is None:
            continue
        level = _level(fs["percent"], DISK_WARNING, DISK_CRITICAL)
        if level:
            ev = {k: fs.get(k) for k in ("mount", "device", "percent", "total", "used", "free")}
            yield _finding(
                "disk_full",
                level,
                ev,
                mount=fs["mount"],
                percent=fs["percent"],
                free_h=human_bytes(fs.get("free") or 0),
            )


def inodes_full(report: dict[str, Any]) -> Iterator[Finding]:
    for fs in data(report, "storage") or []:
        pct = fs.get("inodes_percent")
        if fs.get("image") or pct is None:
            continue
        level = _level(pct, DISK_WARNING, DISK_CRITICAL)
        if level:
            ev = {k: fs.get(k) for k in ("mount", "inodes_percent", "inodes_total", "inodes_used")}
            yield _finding("inodes_full", level, ev, mount=fs["mount"], percent=pct)


def memory_low(report: dict[str, Any]) -> Iterator[Finding]:
    mem = data(report, "memory")
    pct = mem.get("available_percent") if mem else None
    if pct is None:
        return
    level = _level(-pct, -MEMORY_WARNING, -MEMORY_CRITICAL)
    if level:
        ev = {k: mem.get(k) for k in ("available_percent", "available", "total")}
        yield _finding("memory_low", level, ev, percent=pct)


def swapping(report: dict[str, Any]) -> Iterator[Finding]:
    mem = data(report, "memory")
    if not mem:
        return
    rate = mem.get("swap_pages_per_s") or {}
    pages = (rate.get("in") or 0) + (rate.get("out") or 0)
    stall = (mem.get("pressure") or {}).get("full_avg10") or 0
    if pages > SWAP_PAGES_PER_S or stall > PRESSURE_FULL_AVG10:
        yield _finding(
            "swapping",
            "warning",
            {
                "swap_pages_per_s": pages,
                "pressure_full_avg10": stall,
                "swap_percent": mem.get("swap_percent"),
            },
        )


def services_failed(report: dict[str, Any]) -> Iterator[Finding]:
    svc = data(report, "services")
    units = [u["unit"] for u in (svc or {}).get("failed", [])]
    if units:
        shown = ", ".join(units[:10]) + (" …" if len(units) > 10 else "")
        yield _finding(
            "services_failed",
            "warning",
            {"units": units, "count": len(units)},
            count=len(units),
            units=shown,
        )


def no_default_route(report: dict[str, Any]) -> Iterator[Finding]:
    routes = data(report, "routes")
    if routes is not None and not routes.get("default"):
        yield _finding("no_default_route", "critical", {"routes": routes.get("count")})


def no_dns(report: dict[str, Any]) -> Iterator[Finding]:
    dns = data(report, "dns")
    if dns is not None and not dns.get("servers") and not dns.get("upstream"):
        yield _finding("no_dns", "critical", {"servers": []})


def server_unreachable(report: dict[str, Any]) -> Iterator[Finding]:
    r = data(report, "reachability")
    if r is not None and not r.get("connected"):
        # Through a proxy the agent never connects directly: then it is only a note.
        level = "info" if r.get("proxy_configured") else "critical"
        ev = {k: r.get(k) for k in ("host", "port", "error", "resolved", "proxy_configured")}
        yield _finding(
            "server_unreachable",
            level,
            ev,
            host=r.get("host"),
            port=r.get("port"),
            error=r.get("error") or "?",
        )


def clock_skew(report: dict[str, Any]) -> Iterator[Finding]:
    offset = (data(report, "clock") or {}).get("offset_s")
    if offset is None:
        return
    level = _level(abs(offset), CLOCK_WARNING, CLOCK_CRITICAL)
    if level:
        yield _finding("clock_skew", level, {"offset_s": offset}, seconds=round(offset))


def crashes(report: dict[str, Any]) -> Iterator[Finding]:
    journal = data(report, "journal")
    found = (journal or {}).get("crashes", [])
    kernel = [c for c in found if c.get("kind") in ("oops", "panic")]
    apps = [c for c in found if c.get("kind") in ("segfault", "coredump")]
    if kernel:
        kinds = ", ".join(sorted({c["kind"] for c in kernel}))
        yield _finding(
            "kernel_crash",
            "critical",
            {"count": len(kernel), "kinds": kinds, "last": kernel[-1].get("time")},
            count=len(kernel),
            kinds=kinds,
            time=kernel[-1].get("time") or "?",
        )
    if apps:
        names = sorted({str(c.get("process") or c.get("unit") or "?") for c in apps})
        yield _finding(
            "app_crash",
            "warning",
            {"count": len(apps), "sources": names, "last": apps[-1].get("time")},
            count=len(apps),
            names=", ".join(names[:10]),
        )


def smart(report: dict[str, Any]) -> Iterator[Finding]:
    for disk in data(report, "disks") or []:
        s = disk.get("smart") or {}
        if not s.get("ok"):
            continue
        name = disk.get("name")
        critical_warning = s.get("nvme_critical_warning") or 0
        if s.get("passed") is False or critical_warning:
            yield _finding(
                "smart_failed",
                "critical",
                {
                    "disk": name,
                    "passed": s.get("passed"),
                    "nvme_critical_warning": critical_warning,
                },
                disk=name,
            )
            continue
        counts = {
            k: s.get(k) or 0 for k in ("reallocated", "pending", "uncorrectable", "media_errors")
        }
        if any(counts.values()):
            yield _finding("smart_sectors", "warning", {"disk": name, **counts}, disk=name)


def security_updates(report: dict[str, Any]) -> Iterator[Finding]:
    pkgs = data(report, "packages") or {}
    count = pkgs.get("security_updates") or 0
    if count > 0:
        yield _finding(
            "security_updates",
            "warning",
            {
                "count": count,
                "packages": pkgs.get("security_names", [])[:10],
                "lists_updated": pkgs.get("lists_updated"),
            },
            count=count,
            when=pkgs.get("lists_updated") or "?",
        )


def battery_low(report: dict[str, Any]) -> Iterator[Finding]:
    bat = data(report, "battery") or {}
    if not bat.get("present") or bat.get("plugged") or bat.get("percent") is None:
        return
    level = _level(-bat["percent"], -BATTERY_WARNING, -BATTERY_CRITICAL)
    if level:
        yield _finding("battery_low", level, {"percent": bat["percent"]}, percent=bat["percent"])


def overheating(report: dict[str, Any]) -> Iterator[Finding]:
    for t in (data(report, "sensors") or {}).get("temperatures", []):
        current, high, crit = t.get("current"), t.get("high"), t.get("critical")
        if current is None:
            continue
        level = (
            "critical"
            if crit and current >= crit
            else "warning"
            if high and current >= high
            else None
        )
        if level:
            sensor = " ".join(x for x in (t.get("chip"), t.get("label")) if x)
            yield _finding(
                "overheating",
                level,
                {"sensor": sensor, "current": current, "high": high, "critical": crit},
                sensor=sensor,
                current=current,
                limit=crit or high,
            )


def reboot_required(report: dict[str, Any]) -> Iterator[Finding]:
    if (data(report, "system") or {}).get("reboot_required"):
        yield _finding("reboot_required", "info", {"reboot_required": True})


RULES: tuple[Callable[[dict[str, Any]], Iterator[Finding]], ...] = (
    disk_full,
    inodes_full,
    memory_low,
    swapping,
    services_failed,
    no_default_route,
    no_dns,
    server_unreachable,
    clock_skew,
    crashes,
    smart,
    security_updates,
    battery_low,
    overheating,
    reboot_required,
)


def findings(report: dict[str, Any]) -> list[Finding]:
    """Every finding of ``report``, most severe first (stable within a severity)."""
    found = [f for rule in RULES for f in rule(report)]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))
