"""TLS settings for the agent's and the technician's connections to the server."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from enkaku.i18n import t

log = logging.getLogger(__name__)


def client_ssl_context(
    ca_file: Path | None = None, *, insecure: bool = False
) -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl=`` should get.

    ``ca_file`` (or ENKAKU_CA_FILE) adds a private CA, for servers with their own
    certificate authority. ``insecure`` turns verification off entirely: only for tests
    on a trusted network, and said loudly in the log.
    """
    if insecure:
        log.warning("TLS certificate verification is OFF (--insecure)")
        return False
    ca = ca_file or (
        Path(os.environ["ENKAKU_CA_FILE"]) if os.environ.get("ENKAKU_CA_FILE") else None
    )
    if ca is None:
        return True
    if not ca.is_file():
        raise FileNotFoundError(t("ca_file_missing", path=ca))
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
