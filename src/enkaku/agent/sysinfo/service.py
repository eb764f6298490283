"""The ``system_info`` stream: the agent collects the report off the event loop and
sends it as one UTF-8 JSON document (findings on top), then EOF.

The technician opens the stream with no parameters and reads to EOF
(``enkaku.technician.sysinfo.fetch``). The audit event ``system_info_sent`` carries only
the document's size. ``COVERS`` and ``covers_text`` say what the customer allows.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from enkaku.agent.services import ServiceContext, ServiceSpec
from enkaku.agent.sysinfo.collect import GROUPS, PROBES, collect
from enkaku.agent.sysinfo.report import to_json
from enkaku.i18n import register, t

if TYPE_CHECKING:
    from enkaku.agent.services import Serve
    from enkaku.transport.channel import Stream

KIND = ACTION = "system_info"
AUDIT_EVENT = "system_info_sent"
#: The sections a report has, in order (what the customer's consent covers).
COVERS: list[str] = list(PROBES)

register(
    {
        "sysinfo_covers_hardware": (
            "hardware: processor, memory, disks and their health (SMART), graphics, battery, "
            "temperatures and fans",
            "ハードウェア: プロセッサー、メモリ、ディスクとその健康状態 (SMART)、グラフィックス、"
            "バッテリー、温度とファン",
        ),
        "sysinfo_covers_os": (
            "system: distribution, kernel, uptime, clock and time zone, names of logged-in users",
            "システム: ディストリビューション、カーネル、稼働時間、時計とタイムゾーン、"
            "ログイン中のユーザー名",
        ),
        "sysinfo_covers_storage": (
            "storage: size and free space of each disk partition",
            "ストレージ: 各パーティションの容量と空き容量",
        ),
        "sysinfo_covers_network": (
            "network: interfaces and addresses, routes, DNS servers, listening ports, whether "
            "the support server can be reached",
            "ネットワーク: インターフェースとアドレス、ルート、DNS サーバー、待ち受けポート、"
            "サポートサーバーへの接続可否",
        ),
        "sysinfo_covers_processes": (
            "processes: names, users and resource use of the 10 busiest programs",
            "プロセス: 負荷の高い上位 10 件のプログラム名、ユーザー、リソース使用量",
        ),
        "sysinfo_covers_services": ("failed system services", "失敗したシステムサービス"),
        "sysinfo_covers_packages": (
            "number of installed packages and pending updates",
            "インストール済みパッケージ数と未適用の更新",
        ),
        "sysinfo_covers_journal": (
            "system log: recent errors and crashes (at most 50, each cut at 200 characters)",
            "システムログ: 最近のエラーとクラッシュ (最大 50 件、各 200 文字まで)",
        ),
        "sysinfo_covers_never": (
            "Never collected: the contents of your files and documents, program command lines, "
            "passwords, browsing history.",
            "収集しないもの: ファイルや文書の内容、プログラムのコマンドライン、パスワード、"
            "閲覧履歴。",
        ),
    }
)


def covers_text(lang: str | None = None) -> list[str]:
    """What the report contains, one line per group, then what it never contains: for
    the consent question."""
    return [t(f"sysinfo_covers_{group}", lang) for group in GROUPS] + [
        t("sysinfo_covers_never", lang)
    ]


def make_serve(server_url: str | None) -> Serve:
    """A ``serve`` whose report measures the clock against, and tries to reach,
    ``server_url`` (the agent's own server)."""

    async def serve(stream: Stream, ctx: ServiceContext) -> None:
        report = await asyncio.to_thread(collect, server_url)
        doc = to_json(report).encode("utf-8")
        await stream.write(doc)
        await stream.write_eof()
        await ctx.report(AUDIT_EVENT, f"{len(doc)}")

    return serve


def spec_for(server_url: str | None) -> ServiceSpec:
    """The ``system_info`` service of an agent connected to ``server_url``."""
    return ServiceSpec(kind=KIND, action=ACTION, serve=make_serve(server_url))


serve = make_serve(None)
#: Without a server URL (clock offset and reachability say why); prefer ``spec_for``.
SPEC = spec_for(None)
