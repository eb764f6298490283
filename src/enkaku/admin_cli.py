"""`enkaku admin customer|contract|enrol|user ...`: the records on the server's database
(docs/records.md). Changes are audited like those made through /api/v1/admin, with no
actor (the server's own command line)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, time
from typing import Any

from enkaku.i18n import both, language, register, t

register(
    {
        "admin_moved": (
            "enkaku: `enkaku {old}` is now `enkaku admin {new}` (the old name keeps working).",
            "enkaku: `enkaku {old}` は `enkaku admin {new}` になりました (旧コマンドも引き続き"
            "使えます)。",
        ),
        "customer_added": (
            "added customer {name} (id {id})",
            "顧客 {name} (ID {id}) を追加しました。",
        ),
        "customer_changed": (
            "changed customer {name} (id {id})",
            "顧客 {name} (ID {id}) を変更しました。",
        ),
        "contract_changed": ("changed contract {code}", "契約 {code} を変更しました。"),
        "enrol_created": (
            "Enrolment code for {customer}: {code}\n"
            "Give it to the customer once (it is not shown again): they start the agent with "
            "--enrol {code}, or use the download link {link}",
            "{customer} の登録コード: {code}\n"
            "このコードは再表示されません。お客様にお伝えください: エージェントを --enrol {code} "
            "を付けて起動するか、ダウンロードリンク {link} を使います。",
        ),
        "enrol_revoked": ("revoked enrolment code {id}", "登録コード {id} を無効にしました。"),
        "user_disabled": (
            "disabled {user}: their API tokens and console sessions are revoked",
            "{user} を無効にしました。API トークンとコンソールのセッションも無効になりました。",
        ),
        "user_enabled": ("enabled {user}", "{user} を有効にしました。"),
        "user_role_set": ("{user} is now {role}", "{user} のロールを {role} にしました。"),
        "role_auditor": ("auditor (read-only)", "監査担当 (閲覧のみ)"),
        "customer_deleted": (
            "deleted the personal data of customer {id}: its name, contact addresses, machine "
            "links and enrolment codes; its sessions keep only ids, times and volumes",
            "顧客 {id} の個人データ (名前、連絡先、マシンの関連付け、登録コード) を削除しました。"
            "セッションには ID、時刻、データ量のみが残ります。",
        ),
        "customer_delete_confirm": (
            "This deletes customer {id}'s personal data for good; run again with --yes.",
            "顧客 {id} の個人データを完全に削除します。実行するには --yes を付けてください。",
        ),
        "report_written": ("wrote {path}", "{path} に書き出しました。"),
        "report_no_session": ("no session {id}", "セッション {id} はありません"),
        "report_technician_unknown": ("no technician {user}", "技術者 {user} はいません"),
        "retention_purged": (
            "purged {sessions} session record(s) and {events} audit event(s) "
            "(sessions: {session_days} days, audit events: {audit_days} days; 0 = kept)",
            "セッション記録 {sessions} 件と監査イベント {events} 件を削除しました "
            "(セッション: {session_days} 日、監査イベント: {audit_days} 日、0 = 削除しない)",
        ),
        "admin_bad_size": (
            "expected a size such as 500M or 20G, got {value!r}",
            "500M や 20G のようなサイズを指定してください ({value!r} が指定されました)",
        ),
    }
)

_SIZE = re.compile(r"(\d+)\s*([KMGT]?)B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def size(value: str) -> int:
    """A byte count: 500M, 20G, 1T (decimal units, as providers bill)."""
    match = _SIZE.fullmatch(value.strip())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(t("admin_bad_size", value=value))
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _mb(n: int | None) -> str:
    """A byte count the way `size` reads it (20G, 500M)."""
    if n is None:
        return "-"
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


def add_parsers(adsub: Any, add_db_args: Any, day: Any) -> None:
    """The customer, contract, enrol and user areas of `enkaku admin`."""
    cu = adsub.add_parser("customer", help="customers and their contact addresses")
    cusub = cu.add_subparsers(dest="admin_action", required=True)
    ca = cusub.add_parser("add", help="add a customer")
    ca.add_argument("name", help="the customer's name (unique)")
    ca.add_argument(
        "--email", action="append", default=[], help="a contact address (repeat for several)"
    )
    cusub.add_parser("list", help="list the customers")
    cs = cusub.add_parser("show", help="a customer, its contracts, machines and enrolment codes")
    cs.add_argument("customer", help="the customer's name or id")
    ce = cusub.add_parser("edit", help="rename a customer or replace its contact addresses")
    ce.add_argument("customer", help="the customer's name or id")
    ce.add_argument("--name", help="the new name")
    ce.add_argument(
        "--email", action="append", help="a contact address (replaces all; repeat for several)"
    )
    ce.add_argument("--no-email", action="store_true", help="remove every contact address")
    cx = cusub.add_parser("export", help="everything stored about a customer, as JSON")
    cx.add_argument("customer", help="the customer's name or id")
    cx.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output)")
    cd = cusub.add_parser(
        "delete", help="delete a customer's personal data (sessions keep ids and volumes)"
    )
    cd.add_argument("customer", help="the customer's name or id")
    cd.add_argument("--yes", action="store_true", help="really delete")

    ct = adsub.add_parser("contract", help="maintenance contracts of the customers")
    ctsub = ct.add_subparsers(dest="admin_action", required=True)
    cta = ctsub.add_parser("add", help="add a contract to an existing customer")
    cta.add_argument("code", help="the contract code technicians bill sessions to")
    cta.add_argument("--customer", required=True, help="the customer's name or id")
    cta.add_argument(
        "--no-remote-support", action="store_true", help="the contract excludes remote support"
    )
    cta.add_argument("--valid-from", type=day, help="first day (YYYY-MM-DD; default today)")
    cta.add_argument("--valid-until", type=day, help="last day (YYYY-MM-DD; default open-ended)")
    cta.add_argument("--monthly-sessions", type=int, metavar="N", help="sessions a month includes")
    cta.add_argument(
        "--monthly-data", type=size, metavar="SIZE", help="data a month includes (e.g. 20G)"
    )
    ctl = ctsub.add_parser("list", help="list the contracts")
    ctl.add_argument("--customer", help="only this customer's (name or id)")
    cte = ctsub.add_parser("edit", help="change a contract")
    cte.add_argument("code", help="the contract code")
    rs = cte.add_mutually_exclusive_group()
    rs.add_argument(
        "--remote-support", action="store_true", default=None, help="includes remote support"
    )
    rs.add_argument(
        "--no-remote-support",
        dest="remote_support",
        action="store_false",
        help="excludes remote support",
    )
    cte.add_argument("--valid-from", type=day, help="first day (YYYY-MM-DD)")
    vu = cte.add_mutually_exclusive_group()
    vu.add_argument("--valid-until", type=day, help="last day (YYYY-MM-DD)")
    vu.add_argument("--open-ended", action="store_true", help="no last day")
    ms = cte.add_mutually_exclusive_group()
    ms.add_argument("--monthly-sessions", type=int, metavar="N", help="sessions a month includes")
    ms.add_argument("--no-session-limit", action="store_true", help="no limit of sessions")
    md = cte.add_mutually_exclusive_group()
    md.add_argument(
        "--monthly-data", type=size, metavar="SIZE", help="data a month includes (e.g. 20G)"
    )
    md.add_argument("--no-data-limit", action="store_true", help="no limit of data")

    en = adsub.add_parser("enrol", help="enrolment codes that link machines to a customer")
    ensub = en.add_subparsers(dest="admin_action", required=True)
    ec = ensub.add_parser("create", help="create a code for a customer (shown once)")
    ec.add_argument("customer", help="the customer's name or id")
    uses = ec.add_mutually_exclusive_group()
    uses.add_argument(
        "--uses", type=int, default=1, metavar="N", help="machines it may link (default 1)"
    )
    uses.add_argument("--unlimited", action="store_true", help="any number of machines")
    ec.add_argument("--expires", type=day, help="last day it works (YYYY-MM-DD, UTC)")
    el = ensub.add_parser("list", help="list the codes (their last four characters)")
    el.add_argument("--customer", help="only this customer's (name or id)")
    er = ensub.add_parser("revoke", help="revoke a code: no further machine can use it")
    er.add_argument("code_id", type=int, help="the code's id (from list)")

    us = adsub.add_parser("user", help="technician accounts")
    ussub = us.add_subparsers(dest="admin_action", required=True)
    ua = ussub.add_parser(
        "add", help="add an account (password from a prompt or ENKAKU_NEW_PASSWORD)"
    )
    ua.add_argument("username", help="the name the technician logs in with")
    ua.add_argument("--display-name", default="", help="the name customers see")
    ua.add_argument("--company", default="", help="the company customers see")
    ua.add_argument(
        "--role",
        choices=("technician", "admin", "auditor"),
        default="technician",
        help="technician (default), admin, or auditor (read-only)",
    )
    ussub.add_parser("list", help="list the accounts")
    for name, text in (
        ("disable", "disable an account: no sign-in, its tokens and console sessions end"),
        ("enable", "enable a disabled account"),
        ("reset-password", "replace the password (prompt or ENKAKU_NEW_PASSWORD), sign out"),
        ("reset-totp", "remove the second factor and sign out of the console"),
    ):
        ussub.add_parser(name, help=text).add_argument("username", help="the account's name")
    ur = ussub.add_parser("role", help="change an account's role")
    ur.add_argument("username", help="the account's name")
    ur.add_argument("role", choices=("technician", "admin", "auditor"), help="the new role")
    rp = adsub.add_parser("report", help="session history, monthly reports, audit trails")
    rpsub = rp.add_subparsers(dest="admin_action", required=True)
    rps = rpsub.add_parser("sessions", help="session history (filters combine)")
    rps.add_argument("--customer", help="the customer's name or id")
    rps.add_argument("--technician", help="the technician's user name")
    rps.add_argument("--contract", help="the contract's code")
    rps.add_argument("--month", help="YYYY-MM in the time zone")
    rpm = rpsub.add_parser("monthly", help="a customer's month as CSV and/or printable HTML")
    rpm.add_argument("customer", help="the customer's name or id")
    rpm.add_argument("--month", required=True, help="YYYY-MM in the time zone")
    rpm.add_argument("--csv", metavar="FILE", help="write the CSV to FILE ('-': standard output)")
    rpm.add_argument("--html", metavar="FILE", help="write the printable page to FILE")
    rpt = rpsub.add_parser("session", help="one session and its audit trail")
    rpt.add_argument("session_id", help="the session's id")
    for p in (rps, rpm, rpt):
        p.add_argument(
            "--time-zone",
            help="show times and count months in this zone (default ENKAKU_TIME_ZONE, then UTC)",
        )
    rt = adsub.add_parser("retention", help="purge what the retention settings no longer keep")
    rtsub = rt.add_subparsers(dest="admin_action", required=True)
    rtp = rtsub.add_parser("purge", help="purge now (the server also does it every hour)")
    rtp.add_argument(
        "--session-days",
        type=int,
        help="sessions ended more than N days ago (default ENKAKU_SESSION_RETENTION_DAYS, "
        "then 400; 0 keeps them)",
    )
    rtp.add_argument(
        "--audit-days",
        type=int,
        help="audit events older than N days (default ENKAKU_AUDIT_RETENTION_DAYS, then 400; "
        "0 keeps them)",
    )
    for p in (cu, ct, en, us, rp, rt):
        add_db_args(p)


async def run(store: Any, args: argparse.Namespace) -> int:
    """One `enkaku admin customer|contract|enrol|user` action; exit status."""
    from enkaku.server.store.records import RecordsError, StoreError

    try:
        return await _ACTIONS[args.area](store, args)
    except RecordsError as exc:
        message = both(exc.key, **exc.kwargs)
        print(f"enkaku: {message['en']}\nenkaku: {message['ja']}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"enkaku: {exc}", file=sys.stderr)
        return 1


async def _customer(store: Any, args: argparse.Namespace) -> int:
    rec = store.records
    if args.admin_action == "add":
        row = await rec.create_customer(args.name, args.email)
        print(t("customer_added", name=row.name, id=row.id))
    elif args.admin_action == "list":
        for row in await rec.customers():
            print(f"{row.id}\t{row.name}\t{', '.join(row.emails)}")
    elif args.admin_action == "show":
        row = await rec.customer(args.customer)
        print(f"{row.id}\t{row.name}\tcreated {row.created_at:%Y-%m-%d}")
        for email in row.emails:
            print(f"contact\t{email}")
        for c in await rec.contracts(row.id):
            print(f"contract\t{_contract_line(store, c)}")
        for link in await rec.linked_agents(row.id):
            print(f"agent\t{link.agent_id}\t{link.linked_via}\t{link.linked_at:%Y-%m-%d %H:%M}")
        for code in await rec.enrolment_codes(row.id):
            print(f"enrolment\t{_code_line(code)}")
    elif args.admin_action == "export":
        row = await rec.customer(args.customer)
        data = await store.reports.export_customer(row.id)
        await rec.audit_admin("customer_exported", actor=None, target=f"customer:{row.id}")
        _write(args.out, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    elif args.admin_action == "delete":
        row = await rec.customer(args.customer)
        if not args.yes:
            print(t("customer_delete_confirm", id=row.id), file=sys.stderr)
            return 1
        await store.reports.delete_customer(row.id)
        print(t("customer_deleted", id=row.id))
    else:
        row = await rec.customer(args.customer)
        emails = [] if args.no_email else args.email
        row = await rec.update_customer(row.id, name=args.name, emails=emails)
        print(t("customer_changed", name=row.name, id=row.id))
    return 0


def _contract_line(store: Any, c: Any) -> str:
    state = store.contract_serviceable(c) or "ok"
    return (
        f"{c.code}\t{c.customer_name}\t{c.valid_from}..{c.valid_until or ''}\t"
        f"sessions/month {c.monthly_sessions or '-'}\tdata/month {_mb(c.monthly_bytes)}\t{state}"
    )


async def _contract(store: Any, args: argparse.Namespace) -> int:
    rec = store.records
    if args.admin_action == "add":
        customer = await rec.customer(args.customer)
        await rec.create_contract(
            args.code,
            customer.id,
            remote_support=not args.no_remote_support,
            valid_from=args.valid_from,
            valid_until=args.valid_until,
            monthly_sessions=args.monthly_sessions,
            monthly_bytes=args.monthly_data,
        )
        print(t("contract_added", code=args.code))
    elif args.admin_action == "list":
        customer_id = (await rec.customer(args.customer)).id if args.customer else None
        for c in await rec.contracts(customer_id):
            print(_contract_line(store, c))
    else:
        fields: dict[str, object] = {}
        if args.remote_support is not None:
            fields["remote_support"] = args.remote_support
        if args.valid_from is not None:
            fields["valid_from"] = args.valid_from
        if args.valid_until is not None or args.open_ended:
            fields["valid_until"] = args.valid_until
        if args.monthly_sessions is not None or args.no_session_limit:
            fields["monthly_sessions"] = args.monthly_sessions
        if args.monthly_data is not None or args.no_data_limit:
            fields["monthly_bytes"] = args.monthly_data
        await rec.update_contract(args.code, **fields)
        print(t("contract_changed", code=args.code))
    return 0


def _code_line(code: Any) -> str:
    if code.revoked_at is not None:
        state = "revoked"
    elif code.expires_at is not None and _utc(code.expires_at) <= datetime.now(UTC):
        state = "expired"
    elif code.max_uses is not None and code.uses >= code.max_uses:
        state = "used up"
    else:
        state = "usable"
    expires = f"{_utc(code.expires_at):%Y-%m-%d %H:%M} UTC" if code.expires_at else "-"
    return (
        f"{code.id}\t…{code.hint}\tcustomer {code.customer_id}\tuses {code.uses}/"
        f"{code.max_uses or '∞'}\texpires {expires}\t{state}"
    )


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


async def _enrol(store: Any, args: argparse.Namespace) -> int:
    from enkaku.server.settings import from_env

    rec = store.records
    if args.admin_action == "create":
        customer = await rec.customer(args.customer)
        # The code works until the end of its last day (UTC).
        expires = datetime.combine(args.expires, time.max, tzinfo=UTC) if args.expires else None
        raw, _ = await rec.create_enrolment_code(
            customer.id, max_uses=None if args.unlimited else args.uses, expires_at=expires
        )
        try:
            base = from_env().public_url.rstrip("/") or "https://SERVER"
        except ValueError:
            base = "https://SERVER"
        link = f"{base}/download/agent?code={raw}"
        print(t("enrol_created", customer=customer.name, code=raw, link=link))
    elif args.admin_action == "list":
        customer_id = (await rec.customer(args.customer)).id if args.customer else None
        for code in await rec.enrolment_codes(customer_id):
            print(_code_line(code))
    else:
        await rec.revoke_enrolment_code(args.code_id)
        print(t("enrol_revoked", id=args.code_id))
    return 0


async def add_technician(store: Any, args: argparse.Namespace) -> int:
    """`enkaku admin user add` (and the older `enkaku user add`): the password from
    ENKAKU_NEW_PASSWORD or asked without echo, the creation audited."""
    from enkaku.cli import _secret

    password = _secret("ENKAKU_NEW_PASSWORD", t("prompt_new_password", user=args.username))
    if len(password) < 10:
        print(t("password_too_short"), file=sys.stderr)
        return 2
    row = await store.create_technician(
        args.username,
        password,
        display_name=args.display_name,
        company=args.company,
        role=args.role,
    )
    await store.records.audit_admin(
        "technician_created", actor=None, target=f"technician:{row.id}", detail=args.role
    )
    print(t("user_added", role=t(f"role_{args.role}"), user=args.username))
    return 0


async def _user(store: Any, args: argparse.Namespace) -> int:
    from enkaku.cli import _reset_user

    if args.admin_action == "add":
        return await add_technician(store, args)
    if args.admin_action == "list":
        for row in await store.records.technicians():
            state = "disabled" if not row.active else "active"
            totp = "totp" if row.totp_enrolled else "-"
            print(f"{row.id}\t{row.username}\t{row.role}\t{state}\t{totp}\t{row.display_name}")
        return 0
    if args.admin_action in ("reset-password", "reset-totp"):
        args.action = args.admin_action
        return int(await _reset_user(store, args))
    tech = await store.technician_by_name(args.username)
    if tech is None:
        print(t("user_unknown", user=args.username), file=sys.stderr)
        return 1
    if args.admin_action in ("disable", "enable"):
        await store.records.set_disabled(tech.id, args.admin_action == "disable")
        key = "user_disabled" if args.admin_action == "disable" else "user_enabled"
        print(t(key, user=args.username))
    else:
        await store.records.set_role(tech.id, args.role)
        print(t("user_role_set", user=args.username, role=t(f"role_{args.role}")))
    return 0


def _write(path: str | None, text: str) -> None:
    """``text`` to ``path`` (created 0600: reports hold personal data), or stdout."""
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print(t("report_written", path=path), file=sys.stderr)


def _zone(args: argparse.Namespace) -> Any:
    from enkaku.server.settings import SettingsError, zone_info

    name = args.time_zone or os.environ.get("ENKAKU_TIME_ZONE") or "UTC"
    try:
        return zone_info(name)
    except ValueError:
        raise SettingsError(t("setting_time_zone", value=name)) from None


async def _report(store: Any, args: argparse.Namespace) -> int:
    from enkaku.server.reports import Month, duration, local, monthly_csv, monthly_html, trail_text
    from enkaku.server.store.records import RecordsError
    from enkaku.server.store.reports import SessionFilter

    zone = _zone(args)
    rep = store.reports
    if args.admin_action == "session":
        rec = await rep.session(args.session_id)
        if rec is None:
            raise RecordsError("report_no_session", id=args.session_id)
        sys.stdout.write(trail_text(rec, zone, language()))
        return 0
    month = None
    if args.month is not None:
        try:
            month = Month.parse(args.month, zone)
        except ValueError:
            raise RecordsError("report_bad_month", value=args.month) from None
    if args.admin_action == "monthly":
        assert month is not None
        customer = await store.records.customer(args.customer)
        _, records = await rep.month(customer.id, month.start, month.end)
        if args.csv is None and args.html is None:
            args.csv = "-"
        if args.csv is not None:
            _write(args.csv, monthly_csv(records, zone))
        if args.html is not None:
            page = monthly_html(customer, month, records, generated=rep.now())
            _write(args.html, page)
        return 0
    f = SessionFilter(limit=1000)
    if args.customer is not None:
        f.customer_id = (await store.records.customer(args.customer)).id
    if args.technician is not None:
        tech = await rep.technician_ref(args.technician)
        if tech is None:
            raise RecordsError("report_technician_unknown", user=args.technician)
        f.technician_id = tech.id
    if args.contract is not None:
        contract = await rep.contract_ref(args.contract)
        if contract is None:
            raise RecordsError("store_contract_unknown", code=args.contract)
        f.contract_id = contract.id
    if month is not None:
        f.start, f.end = month.start, month.end
    while True:
        rows, total = await rep.sessions(f)
        for r in rows:
            print(
                "\t".join(
                    (
                        r.id,
                        local(r.requested_at, zone),
                        duration(r.duration),
                        r.technician,
                        r.customer,
                        r.contract,
                        r.agent_id,
                        str(r.bytes_to_agent),
                        str(r.bytes_to_technician),
                        r.end_reason or "-",
                        r.end_asserted_by or "-",
                    )
                )
            )
        f.offset += len(rows)
        if not rows or f.offset >= total:
            return 0


async def _retention(store: Any, args: argparse.Namespace) -> int:
    from enkaku.server.settings import SettingsError

    def days(flag: int | None, var: str) -> int:
        raw = flag if flag is not None else os.environ.get(var) or 400
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(t("setting_unparsable", var=var, raw=raw)) from None
        if value < 0:
            raise SettingsError(t("setting_not_negative", name=var))
        return value

    session_days = days(args.session_days, "ENKAKU_SESSION_RETENTION_DAYS")
    audit_days = days(args.audit_days, "ENKAKU_AUDIT_RETENTION_DAYS")
    purged = await store.reports.purge(session_days, audit_days)
    print(
        t(
            "retention_purged",
            sessions=purged.sessions,
            events=purged.events,
            session_days=session_days,
            audit_days=audit_days,
        )
    )
    return 0


_ACTIONS = {
    "customer": _customer,
    "contract": _contract,
    "enrol": _enrol,
    "user": _user,
    "report": _report,
    "retention": _retention,
}


def moved(args: argparse.Namespace) -> None:
    """After an old `enkaku user|contract ...` command succeeded: where it moved."""
    print(
        t("admin_moved", old=f"{args.command} {args.action}", new=f"{args.command} {args.action}"),
        file=sys.stderr,
    )
