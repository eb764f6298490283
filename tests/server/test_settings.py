"""The server's typed settings: validation and flag > environment > default precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enkaku.server.settings import Settings, SettingsError, from_env

CERT, KEY = Path("/etc/enkaku/cert.pem"), Path("/etc/enkaku/key.pem")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ENKAKU_* variable from the developer's shell leaks into a test."""
    for var in list(os.environ):
        if var.startswith("ENKAKU_"):
            monkeypatch.delenv(var)


# -- plain HTTP and TLS ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "2001:db8::1", "example.com"])
def test_plain_http_refused_off_loopback(host: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings(host=host)
    msg = str(info.value)
    assert msg.startswith("host:")
    assert host in msg
    assert "--tls-cert" in msg and "--tls-key" in msg and "--behind-proxy" in msg


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_plain_http_allowed_on_loopback(host: str) -> None:
    s = Settings(host=host)
    assert not s.tls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_plain_http_allowed_behind_proxy(host: str) -> None:
    s = Settings(host=host, behind_proxy=True, public_url="https://support.example.com")
    assert s.host == host
    assert s.ws_base_url == "wss://support.example.com"


def test_behind_proxy_needs_the_public_url() -> None:
    with pytest.raises(SettingsError, match="public_url: required with behind_proxy"):
        Settings(host="0.0.0.0", behind_proxy=True)


def test_tls_allowed_anywhere() -> None:
    s = Settings(host="0.0.0.0", tls_cert=CERT, tls_key=KEY)
    assert s.tls


def test_tls_cert_without_key_refused() -> None:
    with pytest.raises(SettingsError, match=r"^tls_cert / tls_key: give both or neither$"):
        Settings(tls_cert=CERT)


def test_tls_key_without_cert_refused() -> None:
    with pytest.raises(SettingsError, match=r"^tls_cert / tls_key"):
        Settings(tls_key=KEY)


@pytest.mark.parametrize("port", [0, -1, 65536, 100_000])
def test_bad_port(port: int) -> None:
    with pytest.raises(SettingsError, match=rf"^port: {port} is not a TCP port$"):
        Settings(port=port)


@pytest.mark.parametrize("port", [1, 443, 65535])
def test_good_port(port: int) -> None:
    assert Settings(port=port).port == port


def test_heartbeat_timeout_too_small() -> None:
    with pytest.raises(SettingsError, match=r"^heartbeat_timeout:"):
        Settings(heartbeat_timeout=0.5)


# -- public_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://remote.example.com",
        "http://192.0.2.10:8080",
        "http://localhost.example.com",  # loopback-looking name that is not loopback
        "http://127.0.0.1@evil.example",  # userinfo, the host is evil.example
        "ftp://remote.example.com",
        "remote.example.com",
    ],
)
def test_public_url_must_be_https(url: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings(host="0.0.0.0", behind_proxy=True, public_url=url)
    msg = str(info.value)
    assert msg.startswith("public_url:")
    assert repr(url) in msg
    assert "https://" in msg


@pytest.mark.parametrize(
    "url",
    [
        "https://remote.example.com",
        "http://127.0.0.1:8443",
        "http://[::1]:8443",
        "http://localhost",
    ],
)
def test_public_url_accepted(url: str) -> None:
    assert Settings(public_url=url).public_url == url


# -- derived URLs ---------------------------------------------------------------------


def test_base_url_plain_loopback() -> None:
    s = Settings(host="127.0.0.1", port=8080)
    assert s.base_url == "http://127.0.0.1:8080"
    assert s.ws_base_url == "ws://127.0.0.1:8080"


def test_base_url_tls_ipv6() -> None:
    s = Settings(host="::", port=8443, tls_cert=CERT, tls_key=KEY)
    assert s.base_url == "https://[::]:8443"
    assert s.ws_base_url == "wss://[::]:8443"


def test_base_url_from_public_url() -> None:
    s = Settings(host="0.0.0.0", behind_proxy=True, public_url="https://support.example.com/")
    assert s.base_url == "https://support.example.com"
    assert s.ws_base_url == "wss://support.example.com"


def test_node_defaults_to_host_and_port() -> None:
    assert Settings(node_id="n1").node == "n1"
    assert Settings(port=9000).node.endswith(":9000")


# -- from_env -------------------------------------------------------------------------


def test_from_env_defaults() -> None:
    s = from_env()
    assert (s.host, s.port, s.behind_proxy, s.tls_cert) == ("127.0.0.1", 8443, False, None)
    assert s.db_url.startswith("sqlite:///")


def test_from_env_reads_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_HOST", "0.0.0.0")
    monkeypatch.setenv("ENKAKU_PORT", "9443")
    monkeypatch.setenv("ENKAKU_DB", "postgresql://enkaku@db/enkaku")
    monkeypatch.setenv("ENKAKU_TLS_CERT", str(CERT))
    monkeypatch.setenv("ENKAKU_TLS_KEY", str(KEY))
    monkeypatch.setenv("ENKAKU_PUBLIC_URL", "https://support.example.com")
    monkeypatch.setenv("ENKAKU_NODE_ID", "node-7")
    monkeypatch.setenv("ENKAKU_HEARTBEAT_TIMEOUT", "7.5")
    monkeypatch.setenv("ENKAKU_IMPLICIT_CONSENT", "yes")
    s = from_env()
    assert s == Settings(
        host="0.0.0.0",
        port=9443,
        db_url="postgresql://enkaku@db/enkaku",
        tls_cert=CERT,
        tls_key=KEY,
        public_url="https://support.example.com",
        node_id="node-7",
        heartbeat_timeout=7.5,
        implicit_consent=True,
    )


def test_flag_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_PORT", "9443")
    monkeypatch.setenv("ENKAKU_NODE_ID", "from-env")
    monkeypatch.setenv("ENKAKU_BEHIND_PROXY", "true")
    monkeypatch.setenv("ENKAKU_PUBLIC_URL", "https://support.example.com")
    monkeypatch.setenv("ENKAKU_HOST", "0.0.0.0")
    s = from_env(port=10443, node_id="from-flag", behind_proxy=None)
    # A flag left unset (None) does not hide the environment's value.
    assert (s.port, s.node_id, s.behind_proxy, s.host) == (10443, "from-flag", True, "0.0.0.0")


def test_flag_overrides_env_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_IMPLICIT_CONSENT", "1")
    assert from_env(implicit_consent=False).implicit_consent is False


def test_empty_env_value_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_PORT", "")
    assert from_env().port == 8443


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("ENKAKU_PORT", "eighty"),
        ("ENKAKU_HEARTBEAT_TIMEOUT", "5s"),
        ("ENKAKU_BEHIND_PROXY", "maybe"),
        ("ENKAKU_IMPLICIT_CONSENT", "2"),
    ],
)
def test_bad_env_value_names_variable(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    monkeypatch.setenv(var, raw)
    with pytest.raises(SettingsError) as info:
        from_env()
    assert str(info.value) == f"{var}: cannot parse {raw!r}"


@pytest.mark.parametrize("raw", ["1", "true", "YES", "On"])
def test_env_bool_true(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ENKAKU_BEHIND_PROXY", raw)
    monkeypatch.setenv("ENKAKU_PUBLIC_URL", "https://support.example.com")
    assert from_env().behind_proxy is True


@pytest.mark.parametrize("raw", ["0", "false", "NO", "Off"])
def test_env_bool_false(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ENKAKU_BEHIND_PROXY", raw)
    assert from_env().behind_proxy is False


def test_env_value_still_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_HOST", "0.0.0.0")
    with pytest.raises(SettingsError, match=r"^host:"):
        from_env()
    monkeypatch.setenv("ENKAKU_PORT", "70000")
    with pytest.raises(SettingsError, match=r"^port:"):
        from_env(host="127.0.0.1")
