"""The service's records at the size of a busy company's month, on SQLite and PostgreSQL.

``python -m benchmarks.records [--db sqlite,postgresql] [--sessions 100000] [--events 1000000]
[--repeat 5] [--out STEM]``

For each database, with throw-away state (a temporary SQLite file; on PostgreSQL a new
database on the server given by ``--pg-admin-url``, dropped at the end):

1. the schema through the real migrations (``open_engine``), then one month (``--month``,
   default 2026-10, Asia/Tokyo) of a busy company generated in bulk: ``--technicians``
   (200: 5 admins, 5 auditors), ``--customers`` (1,000, each with a contact address and a
   contract, every fifth with a second one), ``--agents`` (20,000, each linked to a
   customer; customers' sizes skewed, the largest has a few hundred machines),
   ``--sessions`` (100,000 over the month, 5 % never connected) and ``--events`` audit
   events (1,000,000: consent, actions granted and denied, files each way with size,
   SHA-256 and hashed name, screenshots, clipboard, typed text, the end) plus the login
   events of the technicians. SQLite: one transaction of ``executemany``; PostgreSQL:
   ``COPY`` (asyncpg ``copy_records_to_table``), then ``ANALYZE``.
2. timed through the real code, each ``--repeat`` times after one warm-up (median and
   slowest):
   - the monthly report of one customer: ``store.reports.month`` (the sessions and every
     audit event of each) then the CSV (``reports.monthly_csv``) and the printable page
     (``reports.monthly_html``), for the largest customer and for a median one;
   - the recent-sessions list, ``GET /api/v1/sessions`` (20 and 100 rows) through the
     real server (aiohttp's test server, Bearer token), as an admin (every technician's
     sessions) and as a technician (own);
   - the admin session history, ``GET /api/v1/reports/sessions`` (the month's first page
     of 100, a page 50,000 rows in, one technician's month) and the monthly report of the
     median customer as ``GET /api/v1/reports/monthly/ID/YYYY-MM.csv`` and ``.html``, as
     an admin; the history's query alone (``store.reports.sessions``) for the same pages
     and one customer's month;
3. the database's size (SQLite: the file and its WAL; PostgreSQL: pg_database_size).

Prints one table per database and, with ``--out``, writes STEM.txt and STEM.json.
Timings are wall-clock on a shared machine: compare the two databases of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp.test_utils import TestServer

from enkaku.server import reports as report_pages
from enkaku.server.app import build_app
from enkaku.server.reports import Month
from enkaku.server.services import SERVICES
from enkaku.server.settings import Settings
from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store
from enkaku.server.store.reports import SessionFilter

ZONE = ZoneInfo("Asia/Tokyo")
#: A well-formed hash no password matches: the generated accounts cannot sign in.
NO_PASSWORD = "$scrypt$benchmark-no-login$"
END_REASONS = [
    ("technician_ended", "technician", 0.68),
    ("customer_ended", "agent", 0.20),
    ("connection_lost", "server", 0.07),
    ("malware_found", "technician", 0.02),
    ("policy_violation", "technician", 0.01),
    ("idle_timeout", "server", 0.02),
]
#: The per-session events after consent, by weight: name, detail maker.
ACTIONS = ("screenshot", "file_send", "file_receive", "terminal", "clipboard", "type_text")


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- the generated month ----------------------------------------------------------------


@dataclass
class Generated:
    """Every row of the generated month, as tuples in the tables' column order."""

    technicians: list[tuple[Any, ...]] = field(default_factory=list)
    customers: list[tuple[Any, ...]] = field(default_factory=list)
    contacts: list[tuple[Any, ...]] = field(default_factory=list)
    contracts: list[tuple[Any, ...]] = field(default_factory=list)
    agents: list[tuple[Any, ...]] = field(default_factory=list)
    links: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    #: customer id -> its sessions in the month
    per_customer: dict[int, int] = field(default_factory=dict)


COLUMNS = {
    "technicians": [
        "id",
        "username",
        "display_name",
        "company",
        "password_hash",
        "role",
        "active",
        "created_at",
    ],
    "customers": ["id", "name", "created_at"],
    "customer_contacts": ["id", "customer_id", "email"],
    "contracts": [
        "id",
        "code",
        "customer_id",
        "remote_support",
        "valid_from",
        "valid_until",
        "monthly_sessions",
        "monthly_bytes",
    ],
    "agents": ["id", "public_key", "first_seen_at", "last_seen_at"],
    "agent_links": ["agent_id", "customer_id", "linked_at", "linked_via"],
    "sessions": [
        "id",
        "agent_id",
        "technician_id",
        "contract_id",
        "node",
        "requested_at",
        "paired_at",
        "ended_at",
        "end_reason",
        "end_asserted_by",
        "ended_by_technician_id",
        "end_comment",
        "bytes_to_agent",
        "bytes_to_technician",
    ],
    "audit_events": [
        "id",
        "session_id",
        "agent_id",
        "technician_id",
        "at",
        "source",
        "event",
        "detail",
        "target",
        "file_name",
        "file_size",
        "file_sha256",
    ],
}


def generate(args: argparse.Namespace) -> Generated:
    rnd = random.Random(args.seed)
    m = Generated()
    month = Month.parse(args.month, ZONE)
    start, end = month.start, month.end
    span = (end - start).total_seconds()
    before = start - timedelta(days=200)
    for i in range(1, args.technicians + 1):
        role = "admin" if i <= 5 else "auditor" if i <= 10 else "technician"
        m.technicians.append(
            (i, f"tech{i:03d}", f"Technician {i}", "ACME Support", NO_PASSWORD, role, True, before)
        )
    contract_id = 0
    contracts_of: dict[int, list[int]] = {}
    for c in range(1, args.customers + 1):
        m.customers.append((c, f"Customer {c:04d} K.K.", before))
        m.contacts.append((c, c, f"it{c}@customer{c}.example"))
        for k in range(2 if c % 5 == 0 else 1):
            contract_id += 1
            contracts_of.setdefault(c, []).append(contract_id)
            m.contracts.append(
                (
                    contract_id,
                    f"C-{c:04d}-{k + 1}",
                    c,
                    True,
                    date(2026, 1, 1),
                    None,
                    200 if k else None,
                    None,
                )
            )
    # Customers' sizes skewed (Zipf-like): a few large ones, a long tail of small ones.
    weights = [1 / (i**0.9) for i in range(1, args.customers + 1)]
    owners = rnd.choices(range(1, args.customers + 1), weights=weights, k=args.agents)
    agent_ids: list[str] = []
    seen: set[str] = set()
    while len(agent_ids) < args.agents:
        aid = f"{rnd.randrange(100_000_000, 1_000_000_000)}"
        if aid not in seen:
            seen.add(aid)
            agent_ids.append(aid)
    for aid, owner in zip(agent_ids, owners, strict=True):
        key = hashlib.sha256(aid.encode()).hexdigest()
        m.agents.append((aid, key, before, end))
        m.links.append((aid, owner, before, "enrolment"))
    technician_ids = [t[0] for t in m.technicians if t[5] != "auditor"]
    reasons = [r for r, _, _ in END_REASONS]
    reason_weights = [w for _, _, w in END_REASONS]
    asserted = {r: a for r, a, _ in END_REASONS}
    per_session = max(0, args.events // max(1, args.sessions) - 3)
    event_id = 0

    def event(
        sid: str | None,
        aid: str | None,
        tid: int | None,
        at: datetime,
        source: str,
        name: str,
        detail: str | None = None,
        fname: str | None = None,
        fsize: int | None = None,
        fsha: str | None = None,
    ) -> None:
        nonlocal event_id
        event_id += 1
        m.events.append(
            (event_id, sid, aid, tid, at, source, name, detail, None, fname, fsize, fsha)
        )

    for n in range(args.sessions):
        idx = rnd.randrange(args.agents)
        aid, owner = agent_ids[idx], owners[idx]
        m.per_customer[owner] = m.per_customer.get(owner, 0) + 1
        contract = rnd.choice(contracts_of[owner])
        tid = rnd.choice(technician_ids)
        requested = start + timedelta(seconds=rnd.random() * (span - 7200))
        sid = f"{n:08x}" + secrets.token_hex(12)
        if rnd.random() < 0.05:  # never connected: the customer did not answer
            ended = requested + timedelta(seconds=60)
            m.sessions.append(
                (
                    sid,
                    aid,
                    tid,
                    contract,
                    "bench",
                    requested,
                    None,
                    ended,
                    "pairing_timeout",
                    "server",
                    None,
                    None,
                    0,
                    0,
                )
            )
            event(sid, aid, None, ended, "server", "ended", "pairing_timeout")
            continue
        paired = requested + timedelta(seconds=rnd.uniform(5, 60))
        length = min(7000.0, rnd.lognormvariate(6.5, 0.8))  # median ~11 min
        ended = paired + timedelta(seconds=length)
        reason = rnd.choices(reasons, weights=reason_weights)[0]
        comment = (
            "Found and removed a browser extension."
            if reason in ("malware_found", "policy_violation")
            else None
        )
        to_agent = int(rnd.lognormvariate(13, 1.5))
        to_tech = int(rnd.lognormvariate(16.5, 1.2))
        m.sessions.append(
            (
                sid,
                aid,
                tid,
                contract,
                "bench",
                requested,
                paired,
                ended,
                reason,
                asserted[reason],
                tid if asserted[reason] == "technician" else None,
                comment,
                to_agent,
                to_tech,
            )
        )
        event(sid, aid, None, paired - timedelta(seconds=2), "agent", "consent_granted")
        step = length / (per_session + 1)
        for k in range(per_session):
            at = paired + timedelta(seconds=step * (k + 1))
            action = ACTIONS[rnd.randrange(len(ACTIONS))]
            if action == "screenshot":
                if rnd.random() < 0.2:
                    event(
                        sid, aid, None, at, "agent", "action_denied", "screenshot:customer_denied"
                    )
                else:
                    event(sid, aid, None, at, "agent", "action_granted", "screenshot")
            elif action in ("file_send", "file_receive"):
                size = int(rnd.lognormvariate(12, 2))
                name = "sha256:" + hashlib.sha256(f"{sid}{k}".encode()).hexdigest()
                digest = hashlib.sha256(f"bytes{sid}{k}".encode()).hexdigest()
                kind = "file_received" if action == "file_send" else "file_sent"
                event(sid, aid, None, at, "agent", kind, str(size), name, size, digest)
            elif action == "terminal":
                event(sid, aid, None, at, "agent", "terminal_opened")
            elif action == "clipboard":
                event(
                    sid, aid, None, at, "agent", "clipboard_to_customer", str(rnd.randrange(9999))
                )
            else:
                event(sid, aid, None, at, "agent", "text_typed", str(rnd.randrange(1, 300)))
        event(sid, aid, None, ended, asserted[reason], "ended", reason)
        event(sid, None, tid, ended, "server", "session_ended", reason)
    # The rest: technicians' logins over the month.
    while event_id < args.events:
        tid = rnd.choice(technician_ids)
        event(None, None, tid, start + timedelta(seconds=rnd.random() * span), "server", "login")
    return m


# -- loading ------------------------------------------------------------------------------


def _sqlite_value(v: Any) -> Any:
    # SQLAlchemy's SQLite DateTime stores "YYYY-MM-DD HH:MM:SS.ffffff" of the UTC instant.
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, date):
        return v.isoformat()
    return v


def load_sqlite(path: Path, m: Generated, indexes: Sequence[str] = ()) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA foreign_keys=OFF")
        with con:
            for table, rows in _tables(m):
                cols = COLUMNS[table]
                sql = f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})"
                con.executemany(sql, ([_sqlite_value(v) for v in row] for row in rows))
        for spec in indexes:
            con.execute(_index_sql(spec))
        con.execute("ANALYZE")
    finally:
        con.close()


def _index_sql(spec: str) -> str:
    name, _, target = spec.partition(":")
    return f"CREATE INDEX {name} ON {target}"


async def load_postgresql(url: str, m: Generated, indexes: Sequence[str] = ()) -> None:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        for table, rows in _tables(m):
            await con.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
        for table in ("technicians", "customers", "customer_contacts", "contracts", "audit_events"):
            await con.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        for spec in indexes:
            await con.execute(_index_sql(spec))
        await con.execute("ANALYZE")
    finally:
        await con.close()


def _tables(m: Generated) -> list[tuple[str, list[tuple[Any, ...]]]]:
    return [
        ("technicians", m.technicians),
        ("customers", m.customers),
        ("customer_contacts", m.contacts),
        ("contracts", m.contracts),
        ("agents", m.agents),
        ("agent_links", m.links),
        ("sessions", m.sessions),
        ("audit_events", m.events),
    ]


# -- timing -------------------------------------------------------------------------------


@dataclass
class Timing:
    what: str
    rows: int
    times: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.times) * 1000


async def timed(what: str, repeat: int, fn: Callable[[], Awaitable[int]]) -> Timing:
    await fn()  # warm-up
    times, rows = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = await fn()
        times.append(time.perf_counter() - t0)
    say(f"  {what}: {statistics.median(times) * 1000:.1f} ms ({rows} rows)")
    return Timing(what, rows, times)


async def measure(db_url: str, m: Generated, args: argparse.Namespace) -> list[Timing]:
    store = Store(await open_engine(db_url))
    settings = Settings(db_url=db_url, node_id="bench", time_zone="Asia/Tokyo")
    app = build_app(settings, store=store)
    server = TestServer(app)
    await server.start_server()
    out: list[Timing] = []
    try:
        svc = app[SERVICES]
        admin_token, _ = await svc.store.issue_token(1, "bench")
        busiest_tech = max(
            (t[0] for t in m.technicians if t[5] == "technician"),
            key=lambda t: sum(1 for s in m.sessions[:2000] if s[2] == t),
        )
        tech_token, _ = await svc.store.issue_token(busiest_tech, "bench")
        month = Month.parse(args.month, ZONE)
        ranked = sorted(m.per_customer.items(), key=lambda kv: kv[1])
        largest, median = ranked[-1], ranked[len(ranked) // 2]

        for label, (cid, count) in (("largest", largest), ("median", median)):

            async def report(cid: int = cid) -> int:
                customer, records = await svc.store.reports.month(cid, month.start, month.end)
                report_pages.monthly_csv(records, ZONE)
                report_pages.monthly_html(customer, month, records, company="ACME Support")
                return len(records)

            out.append(
                await timed(
                    f"monthly report, {label} customer ({count} sessions)", args.repeat, report
                )
            )

            async def report_query(cid: int = cid) -> int:
                _customer, records = await svc.store.reports.month(cid, month.start, month.end)
                return len(records)

            out.append(await timed(f"  of which the query ({label})", args.repeat, report_query))

        async with aiohttp.ClientSession() as http:
            for who, token in (("admin", admin_token), ("technician", tech_token)):
                for limit in (20, 100):

                    async def recent(token: str = token, limit: int = limit) -> int:
                        async with http.get(
                            server.make_url(f"/api/v1/sessions?limit={limit}"),
                            headers={"Authorization": f"Bearer {token}"},
                        ) as r:
                            assert r.status == 200, await r.text()
                            return len((await r.json())["sessions"])

                    out.append(
                        await timed(
                            f"GET /api/v1/sessions?limit={limit} as {who}", args.repeat, recent
                        )
                    )

            month_q = f"month={args.month}&limit=100"
            api_reads = [
                (
                    "GET /api/v1/reports/sessions?month=...&limit=100",
                    f"/reports/sessions?{month_q}",
                ),
                (
                    "GET /api/v1/reports/sessions?month=...&offset=50000",
                    f"/reports/sessions?{month_q}&offset=50000",
                ),
                (
                    "GET /api/v1/reports/sessions?month=...&technician=...",
                    f"/reports/sessions?{month_q}&technician={busiest_tech}",
                ),
                (
                    f"GET /api/v1/reports/monthly/(median)/{args.month}.csv",
                    f"/reports/monthly/{median[0]}/{args.month}.csv",
                ),
                (
                    f"GET /api/v1/reports/monthly/(median)/{args.month}.html",
                    f"/reports/monthly/{median[0]}/{args.month}.html",
                ),
            ]
            for what, path in api_reads:

                async def api_read(path: str = path) -> int:
                    async with http.get(
                        server.make_url("/api/v1" + path),
                        headers={"Authorization": f"Bearer {admin_token}"},
                    ) as r:
                        assert r.status == 200, await r.text()
                        if r.content_type == "application/json":
                            return len((await r.json())["sessions"])
                        return (await r.text()).count("\n")

                out.append(await timed(what, args.repeat, api_read))

        filters = [
            (
                "history: the month, first page of 100",
                SessionFilter(start=month.start, end=month.end, limit=100),
            ),
            (
                "history: the month, page at row 50,000",
                SessionFilter(start=month.start, end=month.end, limit=100, offset=50_000),
            ),
            (
                "history: one technician's month (100)",
                SessionFilter(
                    technician_id=busiest_tech, start=month.start, end=month.end, limit=100
                ),
            ),
            (
                "history: largest customer's month (100)",
                SessionFilter(customer_id=largest[0], start=month.start, end=month.end, limit=100),
            ),
        ]
        for what, f in filters:

            async def history(f: SessionFilter = f) -> int:
                page, _total = await svc.store.reports.sessions(f)
                return len(page)

            out.append(await timed(what, args.repeat, history))
    finally:
        await server.close()
    return out


# -- databases ----------------------------------------------------------------------------


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


async def run_sqlite(m: Generated, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    path = tmp / "records.db"
    url = f"sqlite:///{path}"
    engine = await open_engine(url)
    await engine.dispose()
    t0 = time.perf_counter()
    load_sqlite(path, m, args.index)
    load_s = time.perf_counter() - t0
    say(f"sqlite: loaded in {load_s:.1f} s")
    timings = await measure(url, m, args)
    size = await asyncio.to_thread(lambda: sum(p.stat().st_size for p in tmp.glob("records.db*")))
    return {"db": "sqlite", "load_s": load_s, "size": size, "timings": timings}


async def run_postgresql(m: Generated, args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    admin = args.pg_admin_url
    name = f"enkaku_records_{os.getpid()}_{secrets.token_hex(3)}"
    con = await asyncpg.connect(admin)
    await con.execute(f"CREATE DATABASE {name}")
    await con.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    try:
        engine = await open_engine(url)
        await engine.dispose()
        t0 = time.perf_counter()
        await load_postgresql(url, m, args.index)
        load_s = time.perf_counter() - t0
        say(f"postgresql: loaded in {load_s:.1f} s")
        timings = await measure(url, m, args)
        con = await asyncpg.connect(url)
        size = int(await con.fetchval("SELECT pg_database_size(current_database())"))
        version = str(await con.fetchval("SHOW server_version"))
        await con.close()
    finally:
        con = await asyncpg.connect(admin)
        await con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await con.close()
    return {"db": f"postgresql {version}", "load_s": load_s, "size": size, "timings": timings}


def table(result: dict[str, Any], m: Generated) -> str:
    lines = [
        f"## {result['db']}: {len(m.technicians)} technicians, {len(m.agents)} agents, "
        f"{len(m.sessions)} sessions, {len(m.events)} audit events",
        f"loaded in {result['load_s']:.1f} s; database size {human(result['size'])}",
        "",
        f"| {'what':<56} | {'rows':>5} | {'median ms':>9} | {'max ms':>8} |",
        f"|{'-' * 58}|{'-' * 7}|{'-' * 11}|{'-' * 10}|",
    ]
    for t in result["timings"]:
        lines.append(f"| {t.what:<56} | {t.rows:>5} | {t.median_ms:>9.1f} | {t.max_ms:>8.1f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> tuple[Generated, list[dict[str, Any]]]:
    t0 = time.perf_counter()
    m = generate(args)
    say(
        f"generated in {time.perf_counter() - t0:.1f} s: {len(m.sessions)} sessions, "
        f"{len(m.events)} events"
    )
    results = []
    for db in args.db.split(","):
        if db == "sqlite":
            with tempfile.TemporaryDirectory(prefix="enkaku-records-") as tmp:
                results.append(await run_sqlite(m, args, Path(tmp)))
        elif db == "postgresql":
            results.append(await run_postgresql(m, args))
        else:
            raise SystemExit(f"unknown --db {db}")
    return m, results


def report(m: Generated, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    head = (
        f"benchmarks/records.py at {commit or '?'}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()} ({os.cpu_count()} cores, shared), month {args.month} "
        f"(Asia/Tokyo), repeat {args.repeat} after a warm-up"
        + (f"; extra indexes: {', '.join(args.index)}" if args.index else "")
    )
    text = head + "\n\n" + "\n\n".join(table(r, m) for r in results) + "\n"
    print(text)
    if args.out:
        Path(args.out + ".txt").write_text(text)
        Path(args.out + ".json").write_text(
            json.dumps(
                {
                    "head": head,
                    "args": vars(args),
                    "results": [
                        {
                            **{k: v for k, v in r.items() if k != "timings"},
                            "timings": [
                                {"what": t.what, "rows": t.rows, "seconds": t.times}
                                for t in r["timings"]
                            ],
                        }
                        for r in results
                    ],
                },
                indent=1,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="where to CREATE and DROP the throw-away database",
    )
    p.add_argument("--month", default="2026-10")
    p.add_argument("--technicians", type=int, default=200)
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--agents", type=int, default=20_000)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--out", help="write STEM.txt and STEM.json")
    p.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="NAME:TABLE(COLUMNS)",
        help="create this index after loading (to measure one before a migration adds it)",
    )
    args = p.parse_args(argv)
    m, results = asyncio.run(run(args))
    report(m, results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
