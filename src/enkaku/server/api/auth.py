"""Sign-in endpoints: the CLI's API token and the web console's cookie session, both with
the account's second factor (TOTP or a recovery code); the account's own settings under
/me (second factor, password); the recent session list the console's home shows.

Both sign-ins share the login slow-downs and lockouts (ratelimit.LoginLimits): every
attempt is reserved before the password is checked, and only a complete sign-in (right
password and, with a second factor, a right unused code) takes it back.
docs/console-auth.md describes the rules.
"""

from __future__ import annotations

import time
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from enkaku.i18n import register

from .. import console, totp
from ..ratelimit import RateLimited
from ..store.models import Technician
from .framework import ApiError, Context
from .routes import (
    READ_ALL,
    SessionInfo,
    TechnicianInfo,
    api,
    client_address,
    rate_limited,
    services,
    tech_info,
)

register(
    {
        "totp_required": (
            "Enter the 6-digit code from your authenticator app (or a recovery code).",
            "認証アプリの 6 桁のコード (またはリカバリーコード) を入力してください。",
        ),
        "totp_wrong": (
            "The authenticator code is wrong. Check the time on your phone and use the "
            "newest code.",
            "認証コードが違います。スマートフォンの時刻を確認し、最新のコードを入力してください。",
        ),
        "totp_reused": (
            "This authenticator code was already used; wait for the next one.",
            "この認証コードはすでに使われています。次のコードが表示されるまでお待ちください。",
        ),
        "recovery_code_wrong": (
            "The recovery code is wrong or was already used.",
            "リカバリーコードが違うか、すでに使用済みです。",
        ),
        "csrf_failed": (
            "The request was refused: reload the console page and try again.",
            "リクエストは拒否されました。コンソールのページを再読み込みしてやり直してください。",
        ),
        "console_https_required": (
            "The console signs in only over HTTPS (plain HTTP only on the server's own machine).",
            "コンソールへのサインインは HTTPS でのみ可能です (HTTP はサーバー自身のコンピューター"
            "上でのみ使えます)。",
        ),
        "console_origin": (
            "Sign in from the console page of this server.",
            "このサーバーのコンソールページからサインインしてください。",
        ),
        "not_console_session": (
            "This request is not signed in to the console.",
            "このリクエストはコンソールにサインインしていません。",
        ),
        "password_wrong": (
            "Your current password is wrong.",
            "現在のパスワードが違います。",
        ),
        "new_password_too_short": (
            "The new password needs at least {minimum} characters.",
            "新しいパスワードは {minimum} 文字以上にしてください。",
        ),
        "new_password_same": (
            "The new password is the same as the current one.",
            "新しいパスワードが現在のものと同じです。",
        ),
        "totp_already_enrolled": (
            "Your account already has an authenticator; remove it first to enrol another.",
            "このアカウントには認証アプリが登録済みです。別のものを登録するには先に削除してください。",
        ),
        "totp_not_pending": (
            "Start the authenticator enrolment first (no QR code was issued).",
            "先に認証アプリの登録を開始してください (QR コードが発行されていません)。",
        ),
        "totp_not_enrolled": (
            "Your account has no authenticator.",
            "このアカウントには認証アプリが登録されていません。",
        ),
    }
)

#: The shortest password an account may have (as `enkaku user add` requires).
MIN_PASSWORD = 10


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    label: str = Field(default="", max_length=128)
    #: The authenticator's current code, when the account has a second factor.
    totp: str | None = Field(default=None, max_length=16)
    #: Instead of ``totp``: one of the account's single-use recovery codes.
    recovery_code: str | None = Field(default=None, max_length=32)


class TokenResponse(BaseModel):
    token: str
    expires_at: datetime
    technician: TechnicianInfo


class ConsoleLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=32)


class ConsoleState(BaseModel):
    technician: TechnicianInfo
    #: Send as header X-CSRF-Token on every request other than GET/HEAD.
    csrf_token: str
    totp_enrolled: bool
    #: Unused recovery codes left (0 without a second factor).
    recovery_codes_left: int


class PasswordCheck(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class TotpEnrolment(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class TotpConfirm(BaseModel):
    code: str = Field(min_length=1, max_length=16)


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


class SecondFactorCheck(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    #: A current authenticator code or an unused recovery code.
    code: str = Field(min_length=1, max_length=32)


class PasswordChange(BaseModel):
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


class RecentSession(SessionInfo):
    contract: str
    technician: str


class RecentSessions(BaseModel):
    sessions: list[RecentSession]


class RecentQuery(BaseModel):
    #: How many of the newest records (1 to 100).
    limit: int = Field(default=20, ge=1, le=100)


# -- the checks -----------------------------------------------------------------------


async def _second_factor(
    ctx: Context, tech: Technician, code: str | None, recovery: str | None
) -> str | None:
    """None if the code (TOTP or recovery) is right and now spent, else the error code."""
    store = services(ctx).store
    assert tech.totp_secret is not None
    if recovery:
        ok = await store.use_recovery_code(tech.id, totp.recovery_digest(recovery))
        return None if ok else "recovery_code_wrong"
    if not code:
        return "totp_required"
    step = totp.matching_step(tech.totp_secret, code, time.time())
    if step is None:
        # Not a 6-digit code: perhaps a recovery code typed in the code field.
        if len(totp.normalize_recovery(code)) == 10:
            ok = await store.use_recovery_code(tech.id, totp.recovery_digest(code))
            return None if ok else "recovery_code_wrong"
        return "totp_wrong"
    if not await store.use_totp_step(tech.id, step):
        return "totp_reused"
    return None


async def sign_in(
    ctx: Context, username: str, password: str, code: str | None, recovery: str | None
) -> Technician:
    """The technician if the password and (when enrolled) the second factor are right;
    else ApiError 401 with the failure's own code (an unknown user reads like a wrong
    password) or 429. Limited like every login (ratelimit.LoginLimits)."""
    svc = services(ctx)
    peer = client_address(ctx)
    limits = svc.limits.login
    try:
        # Counted before the password is checked: concurrent guesses see each other.
        wait = limits.begin(username, peer)
    except RateLimited as exc:
        raise rate_limited(exc) from None
    failure: str | None = "login_failed"
    tech = None
    try:
        await svc.limits.pause(wait)
        tech = await svc.store.verify_login(username, password)
        if tech is not None:
            # A right password without its second factor is still a failed attempt: it
            # must not clear the count, or codes could be guessed without limit.
            failure = (
                None
                if tech.totp_secret is None
                else await _second_factor(ctx, tech, code, recovery)
            )
    finally:
        limits.finish(username, peer, ok=failure is None)
    if failure is not None or tech is None:
        why = username[:64] if failure == "login_failed" else f"{username[:64]} ({failure})"
        await svc.store.audit(
            "server", "login_failed", technician_id=tech.id if tech else None, detail=why
        )
        raise ApiError(401, failure or "login_failed")
    return tech


async def _check_password(
    ctx: Context, password: str, *, second_factor: str | None = None
) -> Technician:
    """The signed-in technician's password again, and with ``second_factor`` also a
    current code or a recovery code, in one attempt limited like a login: 403
    ``password_wrong`` (or the second factor's failure code) if not. A wrong code counts
    as a failed login, so codes cannot be guessed here without limit either."""
    svc = services(ctx)
    peer = client_address(ctx)
    name = ctx.tech.username
    try:
        wait = svc.limits.login.begin(name, peer)
    except RateLimited as exc:
        raise rate_limited(exc) from None
    failure: str | None = "password_wrong"
    tech = None
    try:
        await svc.limits.pause(wait)
        tech = await _fresh(ctx)
        if await svc.store.verify_password(tech.id, password):
            failure = None
            if second_factor is not None:
                if tech.totp_secret is None:
                    failure = "totp_not_enrolled"
                else:
                    failure = await _second_factor(ctx, tech, second_factor, None)
    finally:
        svc.limits.login.finish(name, peer, ok=failure is None)
    if failure is not None:
        await svc.store.audit(
            "server", "password_check_failed", technician_id=ctx.tech.id, detail=failure
        )
        raise ApiError(409 if failure == "totp_not_enrolled" else 403, failure)
    assert tech is not None
    return tech


async def _fresh(ctx: Context) -> Technician:
    tech = await services(ctx).store.technician_by_id(ctx.tech.id)
    if tech is None:
        raise ApiError(401, "unauthorized")
    return tech


def _console_session_id(ctx: Context) -> int | None:
    session = ctx.request.get(console.CONSOLE_SESSION)
    return session.id if session is not None else None


# -- the CLI's token ------------------------------------------------------------------


@api.route("POST", "/auth/token", body=LoginRequest, response=TokenResponse, auth=False, status=201)
async def login(ctx: Context, body: LoginRequest) -> TokenResponse:
    """Exchange a user name, password and (when enrolled) TOTP code for an API token."""
    tech = await sign_in(ctx, body.username, body.password, body.totp, body.recovery_code)
    svc = services(ctx)
    token, expires = await svc.store.issue_token(tech.id, body.label)
    await svc.store.audit("server", "login", technician_id=tech.id)
    return TokenResponse(token=token, expires_at=expires, technician=tech_info(tech))


# -- the console's cookie session -----------------------------------------------------


async def _state(ctx: Context, tech: Technician, cookie: str) -> ConsoleState:
    return ConsoleState(
        technician=tech_info(tech),
        csrf_token=console.csrf_token(cookie),
        totp_enrolled=tech.totp_secret is not None,
        recovery_codes_left=await services(ctx).store.recovery_codes_left(tech.id),
    )


@api.route("POST", "/auth/console", body=ConsoleLogin, response=ConsoleState, auth=False)
async def console_login(ctx: Context, body: ConsoleLogin) -> web.StreamResponse:
    """Sign in to the web console: sets the enkaku_console cookie, returns the CSRF token."""
    svc = services(ctx)
    if console.plain_http_refused(ctx.request, svc.settings):
        raise ApiError(403, "console_https_required")
    if not console.same_origin(ctx.request, svc.settings):
        raise ApiError(403, "console_origin")
    tech = await sign_in(ctx, body.username, body.password, body.totp, body.recovery_code)
    raw, _row = await svc.store.create_console_session(tech.id, console.lifetime(svc.settings))
    await svc.store.audit("server", "console_login", technician_id=tech.id)
    state = await _state(ctx, tech, raw)
    resp = web.Response(text=state.model_dump_json(), content_type="application/json")
    console.set_cookie(resp, raw, secure=console.is_https(ctx.request, svc.settings))
    return resp


@api.route("GET", "/auth/console", response=ConsoleState)
async def console_whoami(ctx: Context, _body: None) -> ConsoleState:
    """The console's signed-in technician and CSRF token (401 when not signed in)."""
    raw = ctx.request.cookies.get(console.COOKIE)
    if _console_session_id(ctx) is None or raw is None:
        raise ApiError(401, "not_console_session")
    return await _state(ctx, await _fresh(ctx), raw)


@api.route("DELETE", "/auth/console")
async def console_logout(ctx: Context, _body: None) -> web.StreamResponse:
    """Sign out of the console: the session is deleted and the cookie cleared."""
    svc = services(ctx)
    session_id = _console_session_id(ctx)
    if session_id is None:
        raise ApiError(401, "not_console_session")
    await svc.store.revoke_console_session(session_id)
    await svc.store.audit("server", "console_logout", technician_id=ctx.tech.id)
    resp = web.Response(status=204)
    console.clear_cookie(resp, secure=console.is_https(ctx.request, svc.settings))
    return resp


# -- the account's own settings -------------------------------------------------------


def _issuer(ctx: Context) -> str:
    return services(ctx).settings.support_name or "enkaku"


@api.route("POST", "/me/totp", body=PasswordCheck, response=TotpEnrolment)
async def totp_begin(ctx: Context, body: PasswordCheck) -> TotpEnrolment:
    """Start enrolling an authenticator: a new secret as text, otpauth URI and QR code."""
    tech = await _check_password(ctx, body.password)
    if tech.totp_secret is not None:
        raise ApiError(409, "totp_already_enrolled")
    secret = totp.new_secret()
    await services(ctx).store.begin_totp(tech.id, secret)
    uri = totp.otpauth_uri(secret, tech.username, _issuer(ctx))
    return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))


@api.route("POST", "/me/totp/confirm", body=TotpConfirm, response=RecoveryCodes)
async def totp_confirm(ctx: Context, body: TotpConfirm) -> RecoveryCodes:
    """Finish enrolment with a code from the app; answers the 10 recovery codes (once)."""
    svc = services(ctx)
    tech = await _fresh(ctx)
    if tech.totp_secret is not None:
        raise ApiError(409, "totp_already_enrolled")
    if tech.totp_pending is None:
        raise ApiError(409, "totp_not_pending")
    step = totp.matching_step(tech.totp_pending, body.code, time.time())
    if step is None:
        raise ApiError(422, "totp_wrong")
    codes = totp.new_recovery_codes()
    if not await svc.store.confirm_totp(tech.id, step, [totp.recovery_digest(c) for c in codes]):
        raise ApiError(409, "totp_not_pending")
    await svc.store.audit("server", "totp_enrolled", technician_id=tech.id)
    return RecoveryCodes(recovery_codes=codes)


async def _check_second_factor(ctx: Context, body: SecondFactorCheck) -> Technician:
    return await _check_password(ctx, body.password, second_factor=body.code)


@api.route("DELETE", "/me/totp", body=SecondFactorCheck)
async def totp_remove(ctx: Context, body: SecondFactorCheck) -> None:
    """Remove the authenticator (password and a current code or a recovery code)."""
    tech = await _check_second_factor(ctx, body)
    await services(ctx).store.disable_totp(tech.id)
    await services(ctx).store.audit("server", "totp_removed", technician_id=tech.id)


@api.route("POST", "/me/recovery-codes", body=SecondFactorCheck, response=RecoveryCodes)
async def recovery_codes_renew(ctx: Context, body: SecondFactorCheck) -> RecoveryCodes:
    """Replace the recovery codes with 10 new ones (the old ones stop working)."""
    tech = await _check_second_factor(ctx, body)
    codes = totp.new_recovery_codes()
    await services(ctx).store.replace_recovery_codes(
        tech.id, [totp.recovery_digest(c) for c in codes]
    )
    await services(ctx).store.audit("server", "recovery_codes_renewed", technician_id=tech.id)
    return RecoveryCodes(recovery_codes=codes)


@api.route("POST", "/me/password", body=PasswordChange)
async def change_password(ctx: Context, body: PasswordChange) -> None:
    """Change your own password; every other console session and API token is revoked."""
    if len(body.new) < MIN_PASSWORD:
        raise ApiError(422, "new_password_too_short", minimum=MIN_PASSWORD)
    if body.new == body.current:
        raise ApiError(422, "new_password_same")
    await _check_password(ctx, body.current)
    svc = services(ctx)
    await svc.store.set_password(
        ctx.tech.id,
        body.new,
        keep_console_session=_console_session_id(ctx),
        keep_token=ctx.token,
    )
    await svc.store.audit("server", "password_changed", technician_id=ctx.tech.id)


# -- recent sessions ------------------------------------------------------------------


@api.route("GET", "/sessions", response=RecentSessions, query=RecentQuery)
async def recent_sessions(ctx: Context, _body: None) -> RecentSessions:
    """The newest session records (?limit=1..100, default 20): own, or all for admins."""
    who = None if ctx.tech.role in READ_ALL else ctx.tech.id
    rows = await services(ctx).store.recent_sessions(who, ctx.query.limit)
    out = []
    for row, code, username in rows:
        fields = {k: getattr(row, k) for k in SessionInfo.model_fields if k != "session_id"}
        out.append(RecentSession(session_id=row.id, contract=code, technician=username, **fields))
    return RecentSessions(sessions=out)
