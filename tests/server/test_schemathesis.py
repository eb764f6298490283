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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
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
def served(tmp_path: Path) -> Iterator[tuple[str, Callable[[], str], dict[str, str]]]:
    """The server's URL, a maker of an admin's API tokens and the ids of what it seeded:
    a customer, a technician, a contract, an enrolment code, an agent and a session.

    Each call gets a new token: resetting the admin's own password or second factor (a
    technician_id the run generates may be the admin's) signs the account out
    everywhere, and the calls after it must still be an admin's."""
    server = Server(f"sqlite:///{tmp_path}/server.db")
    url = server.start()
    store = server.services.store

    async def seed() -> dict[str, str]:
        admin = await store.create_technician("admin", PASSWORD, role="admin")
        tech = await store.create_technician("tech", PASSWORD)
        customer = await store.records.create_customer("Example Ltd", ["it@example.com"])
        contract = await store.create_contract("C-100", customer.id)
        _, code = await store.records.create_enrolment_code(customer.id)
        agent_id = await store.agent_for_key("ab" * 32)
        session_id = "5e55" * 8
        await store.create_session(session_id, agent_id, admin.id, contract.id, "inproc")
        examples = {
            "admin_id": str(admin.id),
            "customer_id": str(customer.id),
            "technician_id": str(tech.id),
            "code": "C-100",
            "code_id": str(code.id),
            "agent_id": agent_id,
            "session_id": session_id,
            "report": f"{datetime.now(UTC):%Y-%m}.csv",
        }
        return examples

    examples = server.call(seed())

    def token() -> str:
        return str(server.call(store.issue_token(int(examples["admin_id"]), "schemathesis"))[0])

    try:
        yield url, token, examples
    finally:
        server.stop()


def test_no_server_error_and_nothing_undocumented(
    served: tuple[str, Callable[[], str], dict[str, str]],
) -> None:
    url, token, examples = served
    doc = requests.get(f"{url}/api/v1/openapi.json", timeout=30).json()
    # The seeded records as the path parameters' examples (schemathesis runs them
    # first): the operations' success paths, not only their 404s.
    for ops in doc["paths"].values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in examples:
                    param["example"] = examples[param["name"]]
    schema = schemathesis.openapi.from_dict(doc)
    http = requests.Session()
    failures: list[str] = []
    seen: dict[str, set[int]] = {}
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
                headers = {"Authorization": f"Bearer {token()}"}
                r = case.call_and_validate(
                    base_url=url, session=http, headers=headers, checks=CHECKS
                )
                seen.setdefault(f"{case.method.upper()} {case.path}", set()).add(r.status_code)

            try:
                run()
            except Unsatisfiable:
                continue  # no invalid input exists (no parameters, no body)
            except Exception as exc:  # every operation's failure, not only the first
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
            ran += 1
    assert ran > 40
    assert not failures, "\n\n".join(failures)
    # The seeded examples reached the success paths of the operations with parameters.
    for op in (
        "GET /api/v1/admin/customers/{customer_id}",
        "GET /api/v1/reports/monthly/{customer_id}/{report}",
        "GET /api/v1/sessions/{session_id}",
    ):
        assert 200 in seen[op], (op, seen[op])
