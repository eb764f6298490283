"""Which contract a session is billed to (docs/records.md#rules).

A session needs a contract that includes remote support and is in force today, of the
customer the machine belongs to. A machine not linked to a customer yet may be billed to
any such contract (the technician chooses it); the customer's consent then links the
machine to that contract's customer (agents.py). With ``require_enrolment`` set, a
machine must have been linked by an enrolment code first. A contract past its monthly
allowance gives the technician a warning, never a refusal.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from enkaku.i18n import both, register

from ..services import Services
from ..store.models import Contract
from ..store.records import contract_serviceable
from .framework import ApiError

register(
    {
        "contract_other_customer": (
            "Contract {contract} belongs to another customer than the one machine {agent_id} "
            "belongs to; it cannot be billed for this machine. Contracts you can use: {known}.",
            "契約 {contract} はマシン {agent_id} の顧客とは別の顧客の契約のため、このマシンには"
            "請求できません。使用できる契約: {known}",
        ),
        "contract_none_usable": (
            "Machine {agent_id} belongs to a customer with no contract that includes remote "
            "support and is in force today: no session can be billed. Ask an admin to check "
            "the customer's contracts.",
            "マシン {agent_id} の顧客には、本日有効でリモートサポートを含む契約がないため、"
            "セッションを請求できません。管理者に顧客の契約を確認してもらってください。",
        ),
        "agent_not_enrolled": (
            "Machine {agent_id} is not registered to a customer, and this server requires an "
            "enrolment code: an admin creates one with `enkaku admin enrol create CUSTOMER` "
            "and the customer starts the agent with it.",
            "マシン {agent_id} は顧客に登録されていません。このサーバーでは登録コードが必要です。"
            "管理者が `enkaku admin enrol create 顧客` で作成し、お客様がそのコードでエージェント"
            "を起動してください。",
        ),
        "allowance_sessions": (
            "Contract {contract} is past its monthly allowance: this is session {used} of "
            "{limit} included this month. The session is recorded as usual.",
            "契約 {contract} は今月の上限を超えています: 今月 {limit} 回までのところ、この"
            "セッションは {used} 回目です。セッションは通常どおり記録されます。",
        ),
        "allowance_bytes": (
            "Contract {contract} is past its monthly data allowance: {used} MB of {limit} MB "
            "used this month. The session is recorded as usual.",
            "契約 {contract} は今月のデータ量の上限を超えています: {limit} MB のうち {used} MB "
            "を使用済みです。セッションは通常どおり記録されます。",
        ),
    }
)


class Notice(BaseModel):
    """A warning that did not stop the request (code, message in both languages)."""

    code: str
    message: dict[str, str]


async def choose_contract(
    svc: Services, agent_id: str, code: str | None, today: date
) -> tuple[Contract, bool]:
    """The contract the session is billed to, and whether the machine is linked to a
    customer; ApiError (in both languages) when none may be."""
    records = svc.store.records
    link = await records.agent_link(agent_id)
    if link is None and svc.settings.require_enrolment:
        raise ApiError(403, "agent_not_enrolled", agent_id=agent_id)
    usable = await records.usable_contracts(agent_id, today)
    known = ", ".join(c.code for c in usable) or "-"
    if code is None:
        # Chosen for the technician only when there is nothing to choose from: one
        # usable contract (of the machine's customer; for a machine not linked yet, on
        # the whole server).
        if len(usable) == 1:
            return usable[0], link is not None
        if link is not None and not usable:
            raise ApiError(403, "contract_none_usable", agent_id=agent_id)
        raise ApiError(422, "contract_required", known=known)
    contract = await svc.store.contract_by_code(code)
    if contract is None:
        raise ApiError(404, "contract_unknown", contract=code, known=known)
    if link is not None and contract.customer_id != link.customer_id:
        raise ApiError(
            403, "contract_other_customer", contract=code, agent_id=agent_id, known=known
        )
    why_not = contract_serviceable(contract, today)
    if why_not:
        raise ApiError(403, why_not, contract=contract.code)
    return contract, link is not None


async def allowance_notice(svc: Services, contract: Contract, today: date) -> Notice | None:
    """A warning if the contract's monthly allowance is used up (the session about to be
    recorded counted among the month's sessions)."""
    if contract.monthly_sessions is None and contract.monthly_bytes is None:
        return None
    usage = await svc.store.records.usage(contract.id, today)
    if contract.monthly_sessions is not None and usage.sessions + 1 > contract.monthly_sessions:
        key, fmt = (
            "allowance_sessions",
            {"used": usage.sessions + 1, "limit": contract.monthly_sessions},
        )
    elif contract.monthly_bytes is not None and usage.bytes >= contract.monthly_bytes:
        mb = 1_000_000
        key, fmt = (
            "allowance_bytes",
            {"used": usage.bytes // mb, "limit": contract.monthly_bytes // mb},
        )
    else:
        return None
    return Notice(code=key, message=both(key, contract=contract.code, **fmt))
