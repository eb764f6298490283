"""schemathesis against the running server's OpenAPI document (issue 9, acceptance 5).

The real server (its own thread and loop, tests/e2e/harness.py) on a SQLite database,
called as an admin with a Bearer token. Every operation of the document except the two
sign-outs (DELETE /auth/token revokes the very token the run uses; DELETE /auth/console
is the console's) gets a fixed number of derandomized examples, valid and invalid ones,
and each response must be no server error, with a status, content type, headers and
body the document declares.

ENKAKU_SCHEMATHESIS_EXAMPLES sets the examples per operation and mode (default 6): the
longer run is in benchmarks/README.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from enkaku.server.app import build_app  # noqa: E402
from enkaku.server.ratelimit import Limits  # noqa: E402
from tests.e2e.harness import InProcessServer  # noqa: E402

EXAMPLES = int(os.environ.get("ENKAKU_SCHEMATHESIS_EXAMPLES", "6"))
#: Not called: the run's own token and the console's sign-out.
SKIPPED = {("DELETE", "/api/v1/auth/token"), ("DELETE", "/api/v1/auth/console")}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PASSWORD = "correct horse battery"


async def _no_wait(_seconds: float) -> None:
    """The login and session slow-downs do not wait (the limits still count)."""


class Server(InProcessServer):
    async def _start(self) -> None:
        from aiohttp import web

        self.app = build_app(self.settings, limits=Limits(sleep=_no_wait))
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The server's URL and an admin's API token, with a customer, contract and code."""
    server = Server(f"sqlite:///{tmp_path}/server.db")
    url = server.start()
    store = server.services.store

    async def seed() -> str:
        admin = await store.create_technician("admin", PASSWORD, role="admin")
        await store.create_technician("tech", PASSWORD)
        customer = await store.records.create_customer("Example Ltd", ["it@example.com"])
        await store.create_contract("C-100", customer.id)
        await store.records.create_enrolment_code(customer.id)
        token, _ = await store.issue_token(admin.id, "schemathesis")
        return token

    token = server.call(seed())
    try:
        yield url, token
    finally:
        server.stop()


def test_no_server_error_and_nothing_undocumented(served: tuple[str, str]) -> None:
    url, token = served
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    http = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(base_url=url, session=http, headers=headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                continue  # no invalid input exists (no parameters, no body)
            except Exception as exc:  # every operation's failure, not only the first
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
            ran += 1
    assert ran > 40
    assert not failures, "\n\n".join(failures)
