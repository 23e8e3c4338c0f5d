"""HTTP request and response models of the compliance monitor."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from stdnum import isin as stdnum_isin
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError as StdnumError

Reason = Annotated[str, Field(min_length=3, max_length=2000, examples=["reviewed with desk"])]
RuleName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]


def _isin(value: str) -> str:
    try:
        return str(stdnum_isin.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid ISIN ({error})") from None


def _lei(value: str) -> str:
    try:
        return str(stdnum_lei.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid LEI ({error})") from None


Isin = Annotated[str, AfterValidator(_isin)]
Lei = Annotated[str, AfterValidator(_lei)]
LegalName = Annotated[str, Field(min_length=2, max_length=300)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleChangeIn(_In):
    """A new version of a rule. Fields left out keep their current values; `parameters`
    replace the current ones key by key. `kind` only to create a rule."""

    kind: str | None = None
    enabled: bool | None = None
    action: Literal["alert", "hold"] | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None
    parameters: dict[str, Any] | None = None
    reason: Reason

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "parameters": {"thresholds": {"USD": "2000000"}},
                    "reason": "raise the USD large-trade threshold after the Q4 review",
                }
            ]
        },
    )


class RuleOut(BaseModel):
    name: str
    version: int
    kind: str
    enabled: bool
    action: str
    severity: str
    parameters: dict[str, Any]
    effective_from: datetime
    changed_by: str
    reason: str


class RestrictIn(_In):
    reason: Reason


class WatchIn(_In):
    """One of `lei` or `name`."""

    lei: Lei | None = None
    name: LegalName | None = None
    reason: Reason

    @model_validator(mode="after")
    def _one(self) -> WatchIn:
        if (self.lei is None) == (self.name is None):
            raise ValueError("give exactly one of lei or name")
        return self


class CounterpartyIn(_In):
    name: LegalName


class ListEntryOut(BaseModel):
    entry_id: str
    list: str
    value: str
    reason: str
    added_at: datetime
    added_by: str
    removed_at: datetime | None
    removed_by: str | None
    removal_reason: str | None


class CounterpartyOut(BaseModel):
    lei: str
    name: str
    updated_at: datetime
    updated_by: str


class EvaluationOut(BaseModel):
    trade_id: str
    # The trade version evaluated: 1 at capture, +1 with each amendment.
    version: int
    account: str
    outcome: str
    results: list[dict[str, Any]]
    evaluated_at: datetime


class AlertActionOut(BaseModel):
    action: str
    from_state: str
    to_state: str
    actor: str
    reason: str
    assignee: str | None
    at: datetime


class AlertOut(BaseModel):
    alert_id: str
    trade_id: str
    account: str
    # The trade version whose evaluation raised the alert, and the rule version applied.
    version: int
    rule: str
    rule_version: int
    severity: str
    # A breach of a rule whose action is `hold`: the alert holds its trade version.
    blocking: bool
    detail: str
    evidence: dict[str, Any]
    state: str
    assignee: str | None
    raised_at: datetime
    updated_at: datetime
    closed_reason: str | None


class AlertDetailOut(AlertOut):
    history: list[AlertActionOut]


class AlertPage(BaseModel):
    items: list[AlertOut]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


class DecisionIn(_In):
    """Work an alert: `assign` (with `assignee`), `escalate`, `close`; or, for an alert
    that holds its trade, `propose_release` / `propose_reject`, which another compliance
    officer must `approve` (or anyone `decline`)."""

    action: Literal[
        "assign", "escalate", "close", "propose_release", "propose_reject", "approve", "decline"
    ]
    reason: Reason
    assignee: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "propose_release", "reason": "counterparty cleared by sanctions desk"}
            ]
        },
    )

    @model_validator(mode="after")
    def _assignee(self) -> DecisionIn:
        if self.action == "assign" and self.assignee is None:
            raise ValueError("assign needs an assignee")
        if self.action != "assign" and self.assignee is not None:
            raise ValueError("assignee is only for assign")
        return self


class ProposalOut(BaseModel):
    proposal_id: str
    trade_id: str
    version: int
    decision: str
    state: str
    proposed_by: str
    reason: str
    proposed_at: datetime
    decided_by: str | None
    decided_reason: str | None
    decided_at: datetime | None


class HoldOut(BaseModel):
    trade_id: str
    version: int
    account: str
    # open, released, rejected (four eyes), or closed (superseded or cancelled).
    state: str
    rules: list[str]
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    proposals: list[ProposalOut] = []


class DecisionOut(BaseModel):
    alert: AlertOut
    proposal: ProposalOut | None
    hold: HoldOut | None
