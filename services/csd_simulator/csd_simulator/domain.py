"""How the simulated depository answers an instruction: settable rules, first match wins,
default settle. Deterministic, so tests can produce each outcome. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bo_common.contracts.csd import CsdInstruction

Outcome = Literal["settle", "fail", "partial", "pending", "match_only"]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    isin: str | None = None
    counterparty_lei: str | None = None
    account: str | None = None
    outcome: Outcome
    reason: str | None = Field(default=None, description="e.g. LACK (securities) or MONY (cash)")
    settled_fraction: Decimal = Field(default=Decimal("0.5"), gt=0, lt=1)

    def matches(self, instruction: CsdInstruction) -> bool:
        return (
            (self.isin is None or self.isin == instruction.isin)
            and (
                self.counterparty_lei is None
                or self.counterparty_lei == instruction.counterparty_lei
            )
            and (self.account is None or self.account == instruction.account)
        )


@dataclass(frozen=True)
class StatusStep:
    status: Literal["matched", "pending", "settled", "partially_settled", "failed"]
    reason: str | None = None
    settled_quantity: Decimal | None = None


def answer(instruction: CsdInstruction, rules: list[Rule]) -> list[StatusStep]:
    rule = next((r for r in rules if r.matches(instruction)), None)
    outcome: Outcome = rule.outcome if rule else "settle"
    if outcome == "pending":
        return [StatusStep("pending", rule.reason if rule else None)]
    steps = [StatusStep("matched")]
    if outcome == "settle":
        steps.append(StatusStep("settled", settled_quantity=instruction.quantity))
    elif outcome == "fail":
        steps.append(StatusStep("failed", (rule.reason if rule else None) or "LACK"))
    elif outcome == "partial" and rule is not None:
        steps.append(
            StatusStep(
                "partially_settled", settled_quantity=instruction.quantity * rule.settled_fraction
            )
        )
    return steps
