"""The direction of an instruction's cash leg, now that a netted instruction may be paid for
what it receives or pay for what it delivers (receive/deliver with payment) or move cash
alone (payment free of delivery, quantity 0).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # DBIT (the firm pays) or CRDT (it is paid) against payment; null free of payment. Rows
    # instructed before this revision are against payment the conventional way (DBIT on a
    # RECEIVE, CRDT on a DELIVER), which is what they are given.
    op.add_column("instructions", sa.Column("credit_debit", sa.Text, nullable=True))
    op.execute(
        "UPDATE instructions SET credit_debit = "
        "CASE WHEN direction = 'RECEIVE' THEN 'DBIT' ELSE 'CRDT' END "
        "WHERE payment = 'APMT' AND direction IN ('RECEIVE', 'DELIVER')"
    )
    op.create_check_constraint(
        "ck_instructions_credit_debit",
        "instructions",
        "(payment = 'APMT') = (credit_debit IS NOT NULL) "
        "AND (credit_debit IS NULL OR credit_debit IN ('DBIT', 'CRDT'))",
    )


def downgrade() -> None:
    op.drop_constraint("ck_instructions_credit_debit", "instructions", type_="check")
    op.drop_column("instructions", "credit_debit")
