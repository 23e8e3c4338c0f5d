"""Trace context in the outbox and inbox (see bo_common.outbox.add_trace_context_columns).

A plumbing revision every service has: its own branch from 0002 (the `plumbing` label), so
that it never collides with the service's own numbered chain; `bo migrate` upgrades every
head.

Revision ID: 0100
Revises: 0002
"""

from bo_common.outbox import add_trace_context_columns, drop_trace_context_columns

revision = "0100"
down_revision = "0002"
branch_labels = ("plumbing",)
depends_on = None


def upgrade() -> None:
    add_trace_context_columns()


def downgrade() -> None:
    drop_trace_context_columns()
