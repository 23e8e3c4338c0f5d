"""Compliance tables: rules, the restricted list, evaluations and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RuleRow(Base):
    __tablename__ = "rules"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)


class RestrictedRow(Base):
    __tablename__ = "restricted_list"

    isin: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    added_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    trade_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    outcome: Mapped[str] = mapped_column(sa.Text)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    evaluated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AlertRow(Base):
    __tablename__ = "alerts"

    alert_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    trade_id: Mapped[str] = mapped_column(sa.Text, index=True)
    account: Mapped[str] = mapped_column(sa.Text)
    rule: Mapped[str] = mapped_column(sa.Text)
    detail: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)
    raised_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
