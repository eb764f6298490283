"""The server's typed settings, built once at the composition root.

Precedence: command-line flag > environment variable (ENKAKU_<NAME>) > default.
docs/operations.md lists every setting.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from enkaku.i18n import printable, register, t

register(
    {
        "setting_support_text": (
            "{name} must be printable text of at most {limit} characters.",
            "{name} は {limit} 文字以内の表示可能な文字列にしてください。",
        ),
        "setting_console_time": (
            "{name}: must be more than 0",
            "{name}: 0 より大きくしてください",
        ),
        "setting_time_zone": (
            "time_zone: {value!r} is not a time zone name (such as UTC or Asia/Tokyo)",
            "time_zone: {value!r} はタイムゾーン名ではありません (UTC、Asia/Tokyo など)",
        ),
        "setting_audit_file_names": (
            "audit_file_names must be clear or hash, not {value!r}",
            "audit_file_names には clear か hash を指定してください ({value!r} は使えません)",
        ),
        "setting_support_phone_alone": (
            "--support-phone (ENKAKU_SUPPORT_PHONE) needs --support-name "
            "(ENKAKU_SUPPORT_NAME): the customer sees whose number it is.",
            "--support-phone (ENKAKU_SUPPORT_PHONE) には --support-name "
            "(ENKAKU_SUPPORT_NAME) も指定してください。お客様にどこの番号かを示すためです。",
        ),
        "setting_smtp_url": (
            "smtp_url (ENKAKU_SMTP_URL) must be smtp://HOST[:PORT], smtp+starttls://HOST[:PORT] "
            "or smtps://HOST[:PORT], optionally with USER:PASSWORD@ before the host.",
            "smtp_url (ENKAKU_SMTP_URL) は smtp://ホスト[:ポート]、smtp+starttls://ホスト[:ポート] "
            "または smtps://ホスト[:ポート] にしてください (ホストの前に ユーザー:パスワード@ を"
            "付けられます)。",
        ),
        "setting_smtp_from": (
            "smtp_url (ENKAKU_SMTP_URL) needs smtp_from (ENKAKU_SMTP_FROM), the sender's "
            "e-mail address, such as support@example.com.",
            "smtp_url (ENKAKU_SMTP_URL) には smtp_from (ENKAKU_SMTP_FROM) で送信元の"
            "メールアドレス (support@example.com など) も指定してください。",
        ),
    }
)

#: Longest support company name and phone number sent to agents (the agent cuts there too).
SUPPORT_NAME_MAX = 80
SUPPORT_PHONE_MAX = 40


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting."""


def default_db_url() -> str:
    path = Path(platformdirs.user_data_dir("enkaku")) / "server.db"
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8443
    db_url: str = field(default_factory=default_db_url)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Set when a TLS-terminating reverse proxy is in front; then plain HTTP is allowed
    #: on any address and public_url must be https://.
    behind_proxy: bool = False
    #: The URL agents and technicians use to reach this node (wss:// derived from it).
    public_url: str = ""
    node_id: str = ""
    #: A peer that stays silent this long is gone; both legs are closed.
    heartbeat_timeout: float = 5.0
    #: An idle agent's control link (/ws/agent) that stays silent this long is gone.
    #: Longer than heartbeat_timeout: a session needs fast loss detection, an idle
    #: agent's presence does not, and every ping costs the server CPU per agent
    #: (docs/operations.md#agent-heartbeat).
    agent_heartbeat: float = 30.0
    #: How long one leg of a session waits for the other before the session is dropped.
    pairing_timeout: float = 60.0
    max_frame: int = 256 * 1024
    #: Consent policy: if true, the ID and password are the consent (no prompt).
    implicit_consent: bool = False
    #: Session requests one technician may have waiting to be paired at once.
    max_pending_sessions: int = 3
    # Limits before authentication (docs/operations.md#limits-before-authentication).
    #: An agent link must send a verified hello, a relay leg its token, this fast.
    auth_timeout: float = 5.0
    #: WebSockets one address may hold open before they authenticate.
    max_unauthenticated_per_address: int = 500
    #: New agent IDs one address may register at once, then per minute.
    agent_registration_burst: int = 300
    agent_registrations_per_minute: float = 30.0
    #: A connection must finish a request's headers this long after it opened or after
    #: its previous response (also the idle keep-alive time).
    header_timeout: float = 15.0
    #: An API request body must arrive within this time.
    body_timeout: float = 30.0
    #: Agent IDs offline this many days and never used in a session are deleted
    #: (0: never).
    agent_expiry_days: float = 180.0
    #: Folder with the one-file agents scripts/build-agent wrote (served at
    #: /download/agent); None: the page says how to build them.
    agent_dir: Path | None = None
    #: PEM CA certificate(s) baked into downloaded agents, for a server whose
    #: certificate comes from a private CA (None: the system's CAs).
    agent_ca_file: Path | None = None
    #: The support company's name and phone number, shown in the customer's window
    #: (welcome's ``support``); empty: not shown.
    support_name: str = ""
    support_phone: str = ""
    #: The built web console (Vite's output); None: the package's console_static folder.
    console_dir: Path | None = None
    #: A console sign-in ends after this many minutes without a request, and after this
    #: many hours in any case (docs/console-auth.md).
    console_idle_minutes: float = 60.0
    console_lifetime_hours: float = 12.0
    #: Serve only machines linked to a customer by an enrolment code (docs/records.md);
    #: False: a machine not linked yet is linked by its first consented session.
    require_enrolment: bool = False
    #: The time zone reports show times in and count days and months in (docs/privacy.md,
    #: docs/records.md#reports).
    time_zone: str = "UTC"
    #: How audit events keep the names of transferred files: "hash" (SHA-256 of the name
    #: only; file names are personal data) or "clear" (docs/privacy.md).
    audit_file_names: str = "hash"
    #: Session records older than this many days are purged with their audit events
    #: (0: never); audit events older than audit_retention_days too (docs/privacy.md).
    session_retention_days: int = 400
    audit_retention_days: int = 400
    #: The SMTP server that e-mails customers the notice of a new terms version
    #: (smtp://, smtp+starttls:// or smtps://, optional USER:PASSWORD@; never shown or
    #: logged); empty: no e-mail (docs/operations.md#e-mail-notices-of-new-terms).
    smtp_url: str = field(default="", repr=False)
    #: The notices' sender address (required with smtp_url).
    smtp_from: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(t("setting_port", port=self.port))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(t("setting_tls_pair"))
        if self.tls_cert is None and not self.behind_proxy and not _is_loopback(self.host):
            raise SettingsError(t("setting_plain_http", host=self.host))
        if self.behind_proxy and not self.public_url:
            # Behind a proxy this node cannot see the URL clients use (https, host name),
            # and the relay URLs it hands out must be that one.
            raise SettingsError(t("setting_public_url_required"))
        if self.public_url and not (
            self.public_url.startswith("https://")
            or (self.public_url.startswith("http://") and _is_loopback_url(self.public_url))
        ):
            raise SettingsError(t("setting_public_url_https", url=self.public_url))
        if self.heartbeat_timeout <= 0.5:
            raise SettingsError(t("setting_heartbeat"))
        if not 2.0 <= self.agent_heartbeat <= 3600.0:
            raise SettingsError(t("setting_agent_heartbeat"))
        for name in ("auth_timeout", "header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise SettingsError(t("setting_positive_seconds", name=name))
        for name in (
            "max_unauthenticated_per_address",
            "agent_registration_burst",
            "max_pending_sessions",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(t("setting_at_least_one", name=name))
        if self.agent_registrations_per_minute < 0:
            raise SettingsError(t("setting_not_negative", name="agent_registrations_per_minute"))
        if self.agent_expiry_days < 0:
            raise SettingsError(t("setting_expiry_negative"))
        for name, value, limit in (
            ("support_name", self.support_name, SUPPORT_NAME_MAX),
            ("support_phone", self.support_phone, SUPPORT_PHONE_MAX),
        ):
            if len(value) > limit or printable(value, limit) != value:
                raise SettingsError(t("setting_support_text", name=name, limit=limit))
        if self.support_phone and not self.support_name:
            raise SettingsError(t("setting_support_phone_alone"))
        for name in ("console_idle_minutes", "console_lifetime_hours"):
            if not getattr(self, name) > 0:
                raise SettingsError(t("setting_console_time", name=name))
        try:
            self.zone  # noqa: B018  (validates the name)
        except (ValueError, KeyError):
            raise SettingsError(t("setting_time_zone", value=self.time_zone)) from None
        if self.audit_file_names not in ("clear", "hash"):
            raise SettingsError(t("setting_audit_file_names", value=self.audit_file_names))
        for name in ("session_retention_days", "audit_retention_days"):
            if getattr(self, name) < 0:
                raise SettingsError(t("setting_not_negative", name=name))
        if self.smtp_url:
            smtp_server(self.smtp_url)  # validates; the message never shows the URL
            if "@" not in self.smtp_from or printable(self.smtp_from) != self.smtp_from:
                raise SettingsError(t("setting_smtp_from"))

    @property
    def zone(self) -> ZoneInfo:
        """The configured time zone."""
        return zone_info(self.time_zone)

    @property
    def support(self) -> dict[str, str | None] | None:
        """The welcome's ``support`` field: who the customer can call (None: unset)."""
        if not self.support_name:
            return None
        return {"name": self.support_name, "phone": self.support_phone or None}

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return "ws" + self.base_url[4:]

    @property
    def node(self) -> str:
        return self.node_id or f"{socket.gethostname()}:{self.port}"


@dataclass(frozen=True)
class SmtpServer:
    """An smtp_url taken apart (repr without the password)."""

    host: str
    port: int
    #: "plain" (smtp://), "starttls" (smtp+starttls://) or "tls" (smtps://).
    security: str
    user: str = ""
    password: str = field(default="", repr=False)


SMTP_SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


def smtp_server(url: str) -> SmtpServer:
    """The SMTP server an smtp_url names; SettingsError (never quoting the URL, which may
    hold a password) if it is not one."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise SettingsError(t("setting_smtp_url")) from None
    scheme = SMTP_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not host or parts.path not in ("", "/") or parts.query:
        raise SettingsError(t("setting_smtp_url"))
    security, default_port = scheme
    return SmtpServer(
        host=host,
        port=port or default_port,
        security=security,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def zone_info(name: str) -> ZoneInfo:
    """The time zone ``name`` (ValueError if there is none by that name)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(name) from exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    return _is_loopback(urlsplit(url).hostname or "")


def from_env(**overrides: object) -> Settings:
    """Settings from ENKAKU_* environment variables, then ``overrides`` (flags) on top."""
    env: dict[str, object] = {}
    conv: dict[str, tuple[str, Callable[[str], object]]] = {
        "ENKAKU_HOST": ("host", str),
        "ENKAKU_PORT": ("port", int),
        "ENKAKU_DB": ("db_url", str),
        "ENKAKU_TLS_CERT": ("tls_cert", Path),
        "ENKAKU_TLS_KEY": ("tls_key", Path),
        "ENKAKU_PUBLIC_URL": ("public_url", str),
        "ENKAKU_NODE_ID": ("node_id", str),
        "ENKAKU_BEHIND_PROXY": ("behind_proxy", _bool),
        "ENKAKU_HEARTBEAT_TIMEOUT": ("heartbeat_timeout", float),
        "ENKAKU_AGENT_HEARTBEAT": ("agent_heartbeat", float),
        "ENKAKU_IMPLICIT_CONSENT": ("implicit_consent", _bool),
        "ENKAKU_MAX_PENDING_SESSIONS": ("max_pending_sessions", int),
        "ENKAKU_AUTH_TIMEOUT": ("auth_timeout", float),
        "ENKAKU_MAX_UNAUTHENTICATED_PER_ADDRESS": ("max_unauthenticated_per_address", int),
        "ENKAKU_AGENT_REGISTRATION_BURST": ("agent_registration_burst", int),
        "ENKAKU_AGENT_REGISTRATIONS_PER_MINUTE": ("agent_registrations_per_minute", float),
        "ENKAKU_HEADER_TIMEOUT": ("header_timeout", float),
        "ENKAKU_BODY_TIMEOUT": ("body_timeout", float),
        "ENKAKU_AGENT_EXPIRY_DAYS": ("agent_expiry_days", float),
        "ENKAKU_AGENT_DIR": ("agent_dir", Path),
        "ENKAKU_AGENT_CA_FILE": ("agent_ca_file", Path),
        "ENKAKU_SUPPORT_NAME": ("support_name", str),
        "ENKAKU_SUPPORT_PHONE": ("support_phone", str),
        "ENKAKU_CONSOLE_DIR": ("console_dir", Path),
        "ENKAKU_CONSOLE_IDLE_MINUTES": ("console_idle_minutes", float),
        "ENKAKU_CONSOLE_LIFETIME_HOURS": ("console_lifetime_hours", float),
        "ENKAKU_REQUIRE_ENROLMENT": ("require_enrolment", _bool),
        "ENKAKU_TIME_ZONE": ("time_zone", str),
        "ENKAKU_AUDIT_FILE_NAMES": ("audit_file_names", str),
        "ENKAKU_SESSION_RETENTION_DAYS": ("session_retention_days", int),
        "ENKAKU_AUDIT_RETENTION_DAYS": ("audit_retention_days", int),
        "ENKAKU_SMTP_URL": ("smtp_url", str),
        "ENKAKU_SMTP_FROM": ("smtp_from", str),
    }
    for var, (name, fn) in conv.items():
        raw = os.environ.get(var)
        if raw:
            try:
                env[name] = fn(raw)
            except ValueError:
                raise SettingsError(t("setting_unparsable", var=var, raw=raw)) from None
    env.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**env)  # type: ignore[arg-type]


def _bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
