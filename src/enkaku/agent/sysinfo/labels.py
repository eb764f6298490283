"""Readable names (English, Japanese) for the report's groups, sections and fields.

A field without a label is shown under its JSON name; every text shown comes from here
or from the report, and the report's own values are always escaped by the renderer.
"""

from __future__ import annotations

from enkaku.i18n import register, t

GROUPS = {
    "hardware": ("Hardware", "ハードウェア"),
    "os": ("Operating system", "オペレーティングシステム"),
    "storage": ("Storage", "ストレージ"),
    "network": ("Network", "ネットワーク"),
    "processes": ("Processes", "プロセス"),
    "services": ("Services", "サービス"),
    "packages": ("Packages", "パッケージ"),
    "journal": ("System log", "システムログ"),
}

SECTIONS = {
    "cpu": ("CPU", "CPU"),
    "memory": ("Memory", "メモリ"),
    "disks": ("Disks and SMART health", "ディスクと SMART 診断"),
    "gpu": ("Graphics", "グラフィックス"),
    "battery": ("Battery", "バッテリー"),
    "sensors": ("Temperatures and fans", "温度とファン"),
    "system": ("Distribution and kernel", "ディストリビューションとカーネル"),
    "clock": ("Clock and time zone", "時計とタイムゾーン"),
    "users": ("Logged-in users", "ログイン中のユーザー"),
    "storage": ("File systems", "ファイルシステム"),
    "interfaces": ("Network interfaces", "ネットワークインターフェース"),
    "routes": ("Routes", "ルーティング"),
    "dns": ("DNS servers", "DNS サーバー"),
    "reachability": ("Support server connection", "サポートサーバーへの接続"),
    "listening": ("Listening ports", "待ち受けポート"),
    "processes": ("Processes (top 10)", "プロセス (上位 10 件)"),
    "services": ("Failed services", "失敗したサービス"),
    "packages": ("Packages and updates", "パッケージと更新"),
    "journal": ("Recent errors and crashes", "最近のエラーとクラッシュ"),
}

FIELDS = {
    "model": ("Model", "モデル"),
    "logical": ("Logical CPUs", "論理 CPU 数"),
    "physical": ("Physical cores", "物理コア数"),
    "frequency": ("Frequency", "周波数"),
    "current_mhz": ("Current MHz", "現在 MHz"),
    "max_mhz": ("Max MHz", "最大 MHz"),
    "load_average": ("Load average", "ロードアベレージ"),
    "percent": ("Use %", "使用率 %"),
    "total": ("Total", "合計"),
    "available": ("Available", "利用可能"),
    "used": ("Used", "使用中"),
    "free": ("Free", "空き"),
    "available_percent": ("Available %", "利用可能 %"),
    "swap_total": ("Swap total", "スワップ合計"),
    "swap_used": ("Swap used", "スワップ使用中"),
    "swap_percent": ("Swap use %", "スワップ使用率 %"),
    "swap_pages_per_s": ("Swap pages/s", "スワップ ページ/秒"),
    "in": ("In", "イン"),
    "out": ("Out", "アウト"),
    "pressure": ("Memory pressure (avg10 %)", "メモリ圧迫 (10 秒平均 %)"),
    "some_avg10": ("Some tasks stalled", "一部停止"),
    "full_avg10": ("All tasks stalled", "全停止"),
    "name": ("Name", "名前"),
    "size": ("Size", "容量"),
    "vendor": ("Vendor", "ベンダー"),
    "rotational": ("Spinning disk", "回転ディスク"),
    "removable": ("Removable", "リムーバブル"),
    "smart": ("SMART", "SMART"),
    "passed": ("Health passed", "診断結果 正常"),
    "reallocated": ("Reallocated sectors", "代替処理済みセクター"),
    "pending": ("Pending sectors", "代替保留中セクター"),
    "uncorrectable": ("Uncorrectable sectors", "回復不能セクター"),
    "nvme_critical_warning": ("NVMe critical warning", "NVMe 重大警告"),
    "media_errors": ("Media errors", "メディアエラー"),
    "percentage_used": ("Wear %", "消耗度 %"),
    "temperature": ("Temperature °C", "温度 °C"),
    "power_on_hours": ("Power-on hours", "使用時間 (時間)"),
    "driver": ("Driver", "ドライバー"),
    "present": ("Present", "搭載"),
    "plugged": ("Charger plugged in", "充電器接続"),
    "seconds_left": ("Seconds left", "残り秒数"),
    "temperatures": ("Temperatures", "温度"),
    "fans": ("Fans", "ファン"),
    "chip": ("Chip", "チップ"),
    "label": ("Label", "ラベル"),
    "current": ("Current", "現在値"),
    "high": ("High", "高温"),
    "critical": ("Critical", "危険"),
    "rpm": ("RPM", "回転数"),
    "distribution": ("Distribution", "ディストリビューション"),
    "id": ("ID", "ID"),
    "version": ("Version", "バージョン"),
    "kernel": ("Kernel", "カーネル"),
    "architecture": ("Architecture", "アーキテクチャ"),
    "hostname": ("Host name", "ホスト名"),
    "boot_time": ("Booted at (UTC)", "起動日時 (UTC)"),
    "uptime_s": ("Uptime", "稼働時間"),
    "reboot_required": ("Restart required", "再起動が必要"),
    "timezone": ("Time zone", "タイムゾーン"),
    "utc_offset": ("UTC offset", "UTC との差"),
    "local_time": ("Local time", "現地時刻"),
    "ntp_synchronized": ("Synchronised (NTP)", "時刻同期 (NTP)"),
    "offset_s": ("Offset from server (s)", "サーバーとの差 (秒)"),
    "offset_why": ("Offset not measured", "差を測定できなかった理由"),
    "count": ("Count", "件数"),
    "sessions": ("Sessions", "セッション"),
    "terminal": ("Terminal", "端末"),
    "started": ("Since", "開始"),
    "mount": ("Mount point", "マウントポイント"),
    "device": ("Device", "デバイス"),
    "fstype": ("Type", "種類"),
    "read_only": ("Read-only", "読み取り専用"),
    "image": ("Image", "イメージ"),
    "inodes_total": ("Inodes", "inode 数"),
    "inodes_used": ("Inodes used", "使用中 inode"),
    "inodes_percent": ("Inode use %", "inode 使用率 %"),
    "up": ("Up", "有効"),
    "speed_mbps": ("Speed Mbit/s", "速度 Mbit/s"),
    "mtu": ("MTU", "MTU"),
    "mac": ("MAC address", "MAC アドレス"),
    "ipv4": ("IPv4", "IPv4"),
    "ipv6": ("IPv6", "IPv6"),
    "default": ("Default routes", "デフォルトルート"),
    "routes": ("Routes", "ルート"),
    "dst": ("Destination", "宛先"),
    "gateway": ("Gateway", "ゲートウェイ"),
    "dev": ("Interface", "インターフェース"),
    "metric": ("Metric", "メトリック"),
    "family": ("Family", "種別"),
    "servers": ("Servers", "サーバー"),
    "upstream": ("Upstream servers", "上位サーバー"),
    "search": ("Search domains", "検索ドメイン"),
    "host": ("Host", "ホスト"),
    "port": ("Port", "ポート"),
    "proxy_configured": ("Proxy configured", "プロキシ設定あり"),
    "resolved": ("Resolved addresses", "解決されたアドレス"),
    "connected": ("Connected", "接続成功"),
    "connect_ms": ("Connect time ms", "接続時間 ms"),
    "error": ("Error", "エラー"),
    "address": ("Address", "アドレス"),
    "proto": ("Protocol", "プロトコル"),
    "pid": ("PID", "PID"),
    "process": ("Process", "プロセス"),
    "top_cpu": ("Most CPU", "CPU 使用量上位"),
    "top_memory": ("Most memory", "メモリ使用量上位"),
    "user": ("User", "ユーザー"),
    "cpu_percent": ("CPU %", "CPU %"),
    "rss": ("Memory", "メモリ"),
    "state": ("System state", "システム状態"),
    "failed": ("Failed units", "失敗したユニット"),
    "unit": ("Unit", "ユニット"),
    "load": ("Load", "読み込み"),
    "active": ("Active", "状態"),
    "sub": ("Sub-state", "詳細状態"),
    "description": ("Description", "説明"),
    "manager": ("Package manager", "パッケージ管理"),
    "installed": ("Installed packages", "インストール済みパッケージ"),
    "lists_updated": ("Package lists from (UTC)", "パッケージ一覧の取得日時 (UTC)"),
    "updates": ("Pending updates", "未適用の更新"),
    "security_updates": ("Pending security updates", "未適用のセキュリティ更新"),
    "security_names": ("Security updates for", "セキュリティ更新の対象"),
    "updates_why": ("Updates not checked", "更新を確認できなかった理由"),
    "window_hours": ("Errors of the last hours", "エラー集計期間 (時間)"),
    "error_count": ("Errors", "エラー件数"),
    "error_count_capped": ("More errors than counted", "件数は上限で打ち切り"),
    "errors": ("Latest errors", "最近のエラー"),
    "crash_window_days": ("Crashes of the last days", "クラッシュ集計期間 (日)"),
    "crashes": ("Crashes", "クラッシュ"),
    "crash_count": ("Crash count", "クラッシュ件数"),
    "crashes_why": ("Crashes not checked", "クラッシュを確認できなかった理由"),
    "time": ("Time (UTC)", "日時 (UTC)"),
    "priority": ("Priority", "優先度"),
    "message": ("Message", "メッセージ"),
    "kind": ("Kind", "種類"),
    "why": ("Not available", "取得できなかった理由"),
    # evidence of findings
    "sources": ("Programs", "プログラム"),
    "last": ("Latest (UTC)", "最新 (UTC)"),
    "packages": ("Packages", "パッケージ"),
    "units": ("Units", "ユニット"),
    "kinds": ("Kinds", "種類"),
    "disk": ("Disk", "ディスク"),
    "sensor": ("Sensor", "センサー"),
    "pressure_full_avg10": ("All tasks stalled (avg10 %)", "全停止 (10 秒平均 %)"),
}

register({f"sysinfo_group_{k}": v for k, v in GROUPS.items()})
register({f"sysinfo_section_{k}": v for k, v in SECTIONS.items()})
register({f"sysinfo_field_{k}": v for k, v in FIELDS.items()})

#: Fields whose numbers are bytes (shown as KiB, MiB, GiB).
BYTE_FIELDS = frozenset(
    {"total", "available", "used", "free", "swap_total", "swap_used", "rss", "size"}
)

#: Short fields kept on one line in tables.
NOWRAP_FIELDS = BYTE_FIELDS | frozenset(
    {
        "time",
        "kind",
        "priority",
        "pid",
        "port",
        "proto",
        "started",
        "cpu_percent",
        "percent",
        "boot_time",
        "family",
        "mac",
        "name",
        "mount",
        "device",
    }
)

#: Free text from the machine, allowed to break anywhere so it never widens a table.
LONG_FIELDS = frozenset(
    {
        "message",
        "description",
        "security_names",
        "error",
        "offset_why",
        "updates_why",
        "why",
        "crashes_why",
    }
)


def group(name: str, lang: str) -> str:
    return t(f"sysinfo_group_{name}", lang) if name in GROUPS else name


def section(name: str, lang: str) -> str:
    return t(f"sysinfo_section_{name}", lang) if name in SECTIONS else name


def field_label(name: str, lang: str) -> str:
    return t(f"sysinfo_field_{name}", lang) if name in FIELDS else name
