"""Netting runs: the obligations ready to settle, netted into the instructions that settle
them. Pure: no I/O; the run id is an argument and every instruction id derives from it.

Rules (everything seen from the firm's side)
- Group key: counterparty LEI, ISIN, currency, settlement date, SSI and payment type (DVP or
  FOP). Obligations in different groups never net: not across dates, not across SSIs (so not
  across depositories or accounts), not DVP with FOP. The firm's own account is not part of
  the key; every instruction lists the accounts it covers.
- Signs. A BUY receives securities and pays cash; a SELL delivers securities and is paid.
      net quantity = sum of BUY quantities - sum of SELL quantities   (> 0: the firm receives)
      net cash     = sum of BUY amounts    - sum of SELL amounts      (> 0: the firm pays)
  FOP moves no cash at the depository, so an FOP obligation's cash counts as zero (as in
  `domain.instruction_terms`).
- One instruction per group, by what nets to zero; each is one sese.023 (see `movement`):
  - net quantity != 0: kind "securities", RECEIVE (> 0) or DELIVER (< 0) the absolute net
    quantity; against payment (APMT) of the absolute net cash, debit (DBIT: the firm pays) or
    credit (CRDT: the firm is paid), when the group is DVP and the cash does not net to zero;
    FREE otherwise (FOP, or DVP cash that nets to exactly zero). Either cash direction can
    come with either securities direction: receive 40 and be paid is a receive WITH payment
    (T2S RWP: RECE, APMT, CRDT), deliver and pay a deliver with payment (DWP: DELI, DBIT).
  - net quantity == 0, net cash != 0 (DVP only): kind "payment_only", a payment free of
    delivery (PFOD). No securities move, so `direction` is None and the quantity 0; it is
    sent as T2S sends a PFOD: a sese.023 against payment (APMT) with settlement quantity 0
    and the amount with its CdtDbtInd. A sese.023 must still name a securities movement; by
    our convention it is RECE when the firm pays (DBIT) and DELI when it is paid (CRDT), the
    movement whose conventional cash leg that is, so the counterparty's instruction is the
    mirror image and `penalties.liable_party` puts a lack of cash (MONY) on the payer.
  - both zero: kind "netted_out", quantity 0, amount 0, nothing to send. Its trades are
    settled by netting on the settlement date; the instruction still exists so that every
    trade is covered by exactly one instruction and the trail shows where each trade went.
- Counterparties with netting switched off settle gross: one instruction per obligation,
  always of kind "securities" (an obligation has a positive quantity). The flag is read per
  obligation; the caller sets it from the counterparty's setting at the run.
- Every instruction keeps the sorted trade ids it covers; every trade is in exactly one.
- Ids are uuid5 of the run id and the group key (netted) or the trade id (gross): running the
  same run again gives the same ids, so saving them is idempotent.
- No rounding: sums are exact (a result that would need rounding raises `decimal.Inexact`)
  and keep their scale: 100.00 - 60 is 40.00.
- The output is sorted by group key then trade ids, so it does not depend on input order.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Literal, NamedTuple

from settlement.domain import SettlementError

Side = Literal["BUY", "SELL"]
SettlementType = Literal["DVP", "FOP"]
Direction = Literal["RECEIVE", "DELIVER"]
Payment = Literal["APMT", "FREE"]
CreditDebit = Literal["DBIT", "CRDT"]
InstructionKind = Literal["securities", "payment_only", "netted_out"]

NETTING_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:backoffice:settlement:netting")

# Wide enough that sums of NUMERIC(28, 8) values never round; if one ever would, it raises.
_EXACT = Context(prec=1000, traps=[Inexact, InvalidOperation])


class NettingError(SettlementError):
    """The obligations given to a netting run are not valid."""


class NettingKey(NamedTuple):
    counterparty_lei: str
    isin: str
    currency: str
    settlement_date: date
    ssi_id: int
    settlement_type: SettlementType


@dataclass(frozen=True)
class ReadyObligation:
    """An obligation ready to settle: cleared, with an SSI, not yet instructed.

    `quantity` is the securities quantity (> 0), `amount` the trade's cash (>= 0), both as on
    the trade. `ssi_id` is the SSI version's id (`SsiRow.ssi_id`).
    """

    trade_id: str
    account: str
    counterparty_lei: str
    isin: str
    currency: str
    settlement_date: date
    ssi_id: int
    side: Side
    quantity: Decimal
    amount: Decimal
    settlement_type: SettlementType
    netting_off: bool = False

    def __post_init__(self) -> None:
        if self.side not in ("BUY", "SELL"):
            raise NettingError(f"trade {self.trade_id}: unknown side '{self.side}'")
        if self.settlement_type not in ("DVP", "FOP"):
            raise NettingError(
                f"trade {self.trade_id}: unknown settlement type '{self.settlement_type}'"
            )
        if not (self.quantity.is_finite() and self.quantity > 0):
            raise NettingError(f"trade {self.trade_id}: quantity must be positive")
        if not (self.amount.is_finite() and self.amount >= 0):
            raise NettingError(f"trade {self.trade_id}: amount must not be negative")

    @property
    def key(self) -> NettingKey:
        return NettingKey(
            self.counterparty_lei,
            self.isin,
            self.currency,
            self.settlement_date,
            self.ssi_id,
            self.settlement_type,
        )

    @property
    def signed_quantity(self) -> Decimal:
        """Securities the firm receives (> 0) or delivers (< 0)."""
        return self.quantity if self.side == "BUY" else self.quantity.copy_negate()

    @property
    def signed_cash(self) -> Decimal:
        """Cash the firm pays (> 0) or is paid (< 0) at the depository; zero for FOP."""
        if self.settlement_type == "FOP":
            return Decimal(0)
        return self.amount if self.side == "BUY" else self.amount.copy_negate()


@dataclass(frozen=True)
class PlannedInstruction:
    """One instruction of a run. `quantity` and `amount` are magnitudes (>= 0); the
    direction and `credit_debit` give their signs (see `net_quantity` and `net_cash`)."""

    instruction_id: str
    kind: InstructionKind
    gross: bool
    key: NettingKey
    direction: Direction | None
    payment: Payment
    quantity: Decimal
    amount: Decimal
    credit_debit: CreditDebit | None
    trade_ids: tuple[str, ...]
    accounts: tuple[str, ...]

    @property
    def net_quantity(self) -> Decimal:
        """Securities the firm receives (> 0) or delivers (< 0)."""
        return self.quantity.copy_negate() if self.direction == "DELIVER" else self.quantity

    @property
    def net_cash(self) -> Decimal:
        """Cash the firm pays (> 0) or is paid (< 0)."""
        return self.amount.copy_negate() if self.credit_debit == "CRDT" else self.amount

    @property
    def movement(self) -> Direction | None:
        """The securities movement its sese.023 names: the direction; for a payment_only
        (PFOD), RECEIVE when the firm pays and DELIVER when it is paid; None for netted_out,
        which sends nothing."""
        if self.kind == "payment_only":
            return "RECEIVE" if self.credit_debit == "DBIT" else "DELIVER"
        return self.direction


def net(obligations: Iterable[ReadyObligation], *, run_id: str) -> list[PlannedInstruction]:
    """The instructions that settle `obligations`: one per group, or one per obligation for a
    counterparty with netting switched off. See the module docstring for the rules."""
    groups: defaultdict[NettingKey, list[ReadyObligation]] = defaultdict(list)
    gross: list[ReadyObligation] = []
    seen: set[str] = set()
    for obligation in obligations:
        if obligation.trade_id in seen:
            raise NettingError(f"trade {obligation.trade_id} given twice")
        seen.add(obligation.trade_id)
        if obligation.netting_off:
            gross.append(obligation)
        else:
            groups[obligation.key].append(obligation)

    planned = [
        _plan(key, members, _id(run_id, "net", *_key_parts(key)), gross=False)
        for key, members in groups.items()
    ]
    planned += [_plan(o.key, [o], _id(run_id, "gross", o.trade_id), gross=True) for o in gross]
    return sorted(planned, key=lambda i: (i.key, i.trade_ids))


def _plan(
    key: NettingKey, members: Sequence[ReadyObligation], instruction_id: str, *, gross: bool
) -> PlannedInstruction:
    with localcontext(_EXACT):
        quantity = sum((o.signed_quantity for o in members), Decimal(0))
        cash = sum((o.signed_cash for o in members), Decimal(0))
        kind: InstructionKind
        if quantity != 0:
            kind = "securities"
        elif cash != 0:
            kind = "payment_only"
        else:
            kind = "netted_out"
        against_payment = key.settlement_type == "DVP" and cash != 0
        return PlannedInstruction(
            instruction_id=instruction_id,
            kind=kind,
            gross=gross,
            key=key,
            direction=None if quantity == 0 else "RECEIVE" if quantity > 0 else "DELIVER",
            payment="APMT" if against_payment else "FREE",
            quantity=abs(quantity),
            amount=abs(cash),
            credit_debit=None if not against_payment else "DBIT" if cash > 0 else "CRDT",
            trade_ids=tuple(sorted(o.trade_id for o in members)),
            accounts=tuple(sorted({o.account for o in members})),
        )


def _key_parts(key: NettingKey) -> tuple[str, ...]:
    return (
        key.counterparty_lei,
        key.isin,
        key.currency,
        key.settlement_date.isoformat(),
        str(key.ssi_id),
        key.settlement_type,
    )


def _id(run_id: str, *parts: str) -> str:
    # JSON of the list, so that no choice of separator can make two keys collide.
    return str(uuid.uuid5(NETTING_NAMESPACE, json.dumps([run_id, *parts])))


# --- what a run sends ------------------------------------------------------------------
# Every netted group is one instruction: bo_iso20022's sese.023 carries a cash leg in either
# direction (credit_debit) and a payment free of delivery (quantity 0 against cash), so
# there is no gross fallback. netted_out needs no message.


def sendable(instruction: PlannedInstruction) -> bool:
    """Whether the instruction is a netted_out one (nothing to send) or a sese.023 can carry
    it as planned: a securities movement (free, or against payment either way) or a payment
    free of delivery (against payment, quantity 0, a non-zero amount)."""
    if instruction.kind == "netted_out":
        return instruction.quantity == 0 and instruction.amount == 0
    if instruction.kind == "payment_only":
        return (
            instruction.quantity == 0
            and instruction.payment == "APMT"
            and instruction.amount > 0
            and instruction.credit_debit is not None
        )
    if instruction.direction is None or instruction.quantity <= 0:
        return False
    return (instruction.payment == "FREE") == (instruction.credit_debit is None)


def plan_run(obligations: Iterable[ReadyObligation], *, run_id: str) -> list[PlannedInstruction]:
    """What a run sends: `net`, every group one instruction. Raises NettingError if `net`
    ever planned one that a sese.023 cannot carry (see `sendable`); it does not."""
    planned = net(obligations, run_id=run_id)
    refused = [p for p in planned if not sendable(p)]
    if refused:
        raise NettingError(f"no sese.023 can carry instructions {[p.trade_ids for p in refused]}")
    return planned


def pro_rata(total: Decimal, weights: Sequence[Decimal], step: Decimal) -> list[Decimal]:
    """`total` split over `weights` in proportion, each share a multiple of `step` rounded
    down, and the remainder on the last share, so the shares add up to `total` exactly.

    `total` must be a multiple of `step` and >= 0, the weights >= 0 with a positive sum.
    Every share is >= 0 and within (len(weights) - 1) steps of its exact proportion.
    """
    if not weights:
        raise NettingError("nothing to split over")
    whole = sum(weights, Decimal(0))
    if whole <= 0 or any(w < 0 for w in weights):
        raise NettingError("weights must be >= 0 with a positive sum")
    if total < 0 or total % step != 0:
        raise NettingError(f"total {total} is not a non-negative multiple of {step}")
    with localcontext(Context(prec=1000)):
        shares = [(total * w / whole).quantize(step, rounding=ROUND_DOWN) for w in weights[:-1]]
        shares.append(total - sum(shares, Decimal(0)))
    return shares
