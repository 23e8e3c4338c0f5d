"""How the simulated depository answers an instruction: settable rules, first match wins,
default settle. Deterministic, so tests can produce each outcome. No I/O.

An instruction is a sese.023 (bo_iso20022.SettlementInstruction); the answers are the
sese.024 status advice (matched, pending, failed) and sese.025 confirmations (settled,
partially settled) the depository sends back, in order.

When it settles is a setting (SettleOn): on receipt (the default, so a demo settles in
seconds) or, as a real depository does, on the intended settlement date: the instruction is
matched at once (receive) and settled once the simulated date has reached its intended
settlement date (settle_due), under the rules in force at that moment.

Every form of sese.023 settles: receive/deliver against payment (either cash direction, so a
receive or deliver WITH payment too: the confirmation echoes its credit_debit), free of
payment, and a payment free of delivery (PFOD: quantity 0 against cash), confirmed with a
settled quantity of 0 and the whole amount. A PFOD moves no securities to settle a part of,
so it never settles partially: a partial rule settles it whole."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bo_common.contracts.csd import minor_units
from bo_iso20022 import (
    LACK_OF_SECURITIES,
    SettlementConfirmation,
    SettlementInstruction,
    StatusAdvice,
    failing_reason_codes,
    pending_reason_codes,
)

Outcome = Literal["settle", "fail", "partial", "pending", "match_only"]
SettleOn = Literal["receipt", "intended_date"]
Answer: TypeAlias = StatusAdvice | SettlementConfirmation

# Quantities are booked to 8 decimals across the back office (the gateway's limit): a
# partial settlement settles the fraction of the quantity rounded down to that.
QUANTITY_STEP = Decimal("0.00000001")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    isin: str | None = None
    counterparty_lei: str | None = None
    # The safekeeping account the instruction names (QtyAndAcctDtls/SfkpgAcct: our account
    # at the depository, from the SSI), the only account a depository sees.
    account: str | None = None
    outcome: Outcome
    reason: str | None = Field(
        default=None,
        description=(
            "A sese.024 reason code: for fail a FailingReason4Code (default LACK securities; "
            "MONY cash), for pending a PendingReason24Code (none: NORE)"
        ),
    )
    settled_fraction: Decimal = Field(default=Decimal("0.5"), gt=0, lt=1, decimal_places=8)

    @model_validator(mode="after")
    def _reason_is_a_code_of_its_outcome(self) -> Rule:
        if self.reason is None:
            return self
        if self.outcome == "fail":
            codes = failing_reason_codes()
        elif self.outcome == "pending":
            codes = pending_reason_codes()
        else:
            raise ValueError(f"a {self.outcome} rule has no reason")
        if self.reason not in codes:
            raise ValueError(
                f"reason {self.reason!r} is not a sese.024 {self.outcome} reason code "
                f"(e.g. {', '.join(sorted(codes)[:6])}, ...)"
            )
        return self

    def matches(self, instruction: SettlementInstruction) -> bool:
        return (
            (self.isin is None or self.isin == instruction.isin)
            and (
                self.counterparty_lei is None
                or self.counterparty_lei == instruction.counterparty_lei
            )
            and (self.account is None or self.account == instruction.safekeeping_account)
        )


def _confirmation(
    instruction: SettlementInstruction, settled_quantity: Decimal
) -> SettlementConfirmation:
    partial = settled_quantity < instruction.quantity
    amount = instruction.settlement_amount
    if amount is not None and partial:
        exponent = Decimal(1).scaleb(-minor_units(instruction.currency or ""))
        amount = (amount * settled_quantity / instruction.quantity).quantize(
            exponent, rounding=ROUND_HALF_EVEN
        )
    return SettlementConfirmation(
        instruction_id=instruction.instruction_id,
        status="partially_settled" if partial else "settled",
        movement=instruction.movement,
        payment=instruction.payment,
        isin=instruction.isin,
        settled_quantity=settled_quantity,
        remaining_quantity=instruction.quantity - settled_quantity if partial else None,
        settled_amount=amount,
        currency=instruction.currency,
        # Settled as of the intended settlement date (deterministic: the same instruction
        # is always answered with the same bytes).
        settlement_date=instruction.settlement_date,
        trade_ids=instruction.trade_ids,
        credit_debit=instruction.credit_debit,
    )


def partial_quantity(quantity: Decimal, fraction: Decimal) -> Decimal:
    """The fraction of the quantity, rounded down to QUANTITY_STEP, at least one step."""
    return max((quantity * fraction).quantize(QUANTITY_STEP, rounding=ROUND_DOWN), QUANTITY_STEP)


def answer(instruction: SettlementInstruction, rules: list[Rule]) -> list[Answer]:
    rule = next((r for r in rules if r.matches(instruction)), None)
    outcome: Outcome = rule.outcome if rule else "settle"
    instruction_id = instruction.instruction_id
    if outcome == "pending":
        return [
            StatusAdvice(
                instruction_id=instruction_id,
                status="pending",
                reason_code=rule.reason if rule else None,
            )
        ]
    steps: list[Answer] = [StatusAdvice(instruction_id=instruction_id, status="matched")]
    if outcome == "settle":
        steps.append(_confirmation(instruction, instruction.quantity))
    elif outcome == "fail":
        reason = (rule.reason if rule else None) or LACK_OF_SECURITIES
        steps.append(
            StatusAdvice(instruction_id=instruction_id, status="failed", reason_code=reason)
        )
    elif outcome == "partial" and rule is not None:
        if instruction.quantity == 0:  # a PFOD: no part to settle, so it settles whole
            steps.append(_confirmation(instruction, instruction.quantity))
        else:
            settled = partial_quantity(instruction.quantity, rule.settled_fraction)
            steps.append(_confirmation(instruction, min(settled, instruction.quantity)))
    return steps


class Simulation(BaseModel):
    """The rules document: the behaviour rules and the simulation controls.

    settle_on: when a matched instruction settles (None: the configured default,
    CSD_SIMULATOR_SETTLE_ON). as_of: the date the simulated depository takes as today (a
    test hook; None: the UTC date of the clock)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    settle_on: SettleOn | None = None
    as_of: date | None = None


def is_due(instruction: SettlementInstruction, settle_on: SettleOn, today: date) -> bool:
    """Whether the instruction settles now: always on receipt, else once today (UTC, or the
    simulated as_of date) has reached its intended settlement date."""
    return settle_on == "receipt" or today >= instruction.settlement_date


def receive(
    instruction: SettlementInstruction, rules: list[Rule], settle_on: SettleOn, today: date
) -> tuple[list[Answer], bool]:
    """What the depository sends when the instruction arrives, and whether it keeps the
    instruction to settle later (settle_due). Only an instruction that would be matched and
    then settle or fail, and is not yet due, is kept: it is matched now and the rest waits."""
    steps = answer(instruction, rules)
    if is_due(instruction, settle_on, today) or len(steps) < 2:
        return steps, False
    return steps[:1], True


def settle_due(instruction: SettlementInstruction, rules: list[Rule]) -> list[Answer]:
    """What the depository sends for a kept (already matched) instruction once it is due,
    under the rules in force then: settled (no rule), failed, partially settled, nothing more
    for match_only, or a pending advice for a pending rule."""
    steps = answer(instruction, rules)
    if steps and isinstance(steps[0], StatusAdvice) and steps[0].status == "matched":
        return steps[1:]
    return steps
