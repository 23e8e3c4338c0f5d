"""Chart of accounts, effective times, balance projections, balance checked by the
database, limits and their exceptions, partial settlements.

- Entries and lines get `effective_at` (when the posting takes effect; as-of balances are
  computed on it), lines a covering index on (account, unit, effective_at).
- `ledger_accounts`: the chart, one row per ledger account and unit, created on demand,
  with its type and normal side (append-only).
- `account_balances` (current balance) and `balance_days` (net movement per effective UTC
  day) are projections of the journal kept by a statement trigger on journal_lines, in the
  same transaction: no code path can change the journal without them.
- The same trigger refuses a statement that leaves any entry it touched unbalanced in any
  unit, and a deferred constraint trigger checks at commit that every new entry has lines
  and balances: no path, the domain code bypassed or not, commits an unbalanced entry.
- TRUNCATE of the journal is refused like UPDATE and DELETE.
- `account_limits` and `ledger_exceptions`: a posting that would take a client's position
  below its limit is not applied but recorded as an exception.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(38, 8)


def upgrade() -> None:
    # Existing rows take effect when they were posted. The append-only triggers are off
    # only for this backfill of a new column, inside the migration's transaction.
    op.add_column("journal_entries", sa.Column("effective_at", sa.DateTime(timezone=True)))
    op.add_column("journal_entries", sa.Column("event_type", sa.Text))
    op.add_column("journal_lines", sa.Column("effective_at", sa.DateTime(timezone=True)))
    op.execute("ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_append_only")
    op.execute("ALTER TABLE journal_lines DISABLE TRIGGER journal_lines_append_only")
    op.execute("UPDATE journal_entries SET effective_at = posted_at")
    op.execute(
        "UPDATE journal_lines l SET effective_at = e.posted_at "
        "FROM journal_entries e WHERE e.entry_id = l.entry_id"
    )
    op.execute("ALTER TABLE journal_entries ENABLE TRIGGER journal_entries_append_only")
    op.execute("ALTER TABLE journal_lines ENABLE TRIGGER journal_lines_append_only")
    op.alter_column("journal_entries", "effective_at", nullable=False)
    op.alter_column("journal_lines", "effective_at", nullable=False)

    op.drop_constraint("entry_kind", "journal_entries", type_="check")
    op.create_check_constraint(
        "entry_kind",
        "journal_entries",
        "kind IN ('pending', 'settled', 'partially_settled', 'reversal')",
    )
    op.drop_index("ix_journal_lines_ledger_account", "journal_lines")
    op.execute(
        "CREATE INDEX journal_lines_account_time ON journal_lines "
        "(ledger_account, unit, effective_at) INCLUDE (debit, credit)"
    )
    op.create_check_constraint("line_one_side", "journal_lines", "(debit = 0) <> (credit = 0)")

    op.create_table(
        "ledger_accounts",
        sa.Column("ledger_account", sa.Text, primary_key=True),
        sa.Column("unit", sa.Text, primary_key=True),
        sa.Column("account_type", sa.Text, nullable=False),
        sa.Column("normal_side", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("asset_class", sa.Text, nullable=False),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("normal_side IN ('debit', 'credit')", name="chart_normal_side"),
        sa.CheckConstraint("phase IN ('settled', 'pending')", name="chart_phase"),
    )
    op.create_index("ledger_accounts_owner", "ledger_accounts", ["account_type", "owner"])
    op.execute(
        """CREATE TRIGGER ledger_accounts_append_only BEFORE UPDATE OR DELETE ON ledger_accounts
        FOR EACH ROW EXECUTE FUNCTION journal_is_append_only()"""
    )

    op.create_table(
        "account_balances",
        sa.Column("ledger_account", sa.Text, primary_key=True),
        sa.Column("unit", sa.Text, primary_key=True),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("lines", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "balance_days",
        sa.Column("ledger_account", sa.Text, primary_key=True),
        sa.Column("unit", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("lines", sa.BigInteger, nullable=False),
    )
    op.execute(
        """INSERT INTO account_balances (ledger_account, unit, balance, lines)
        SELECT ledger_account, unit, sum(debit - credit), count(*) FROM journal_lines
        GROUP BY 1, 2"""
    )
    op.execute(
        """INSERT INTO balance_days (ledger_account, unit, day, amount, lines)
        SELECT ledger_account, unit, (effective_at AT TIME ZONE 'UTC')::date,
               sum(debit - credit), count(*)
        FROM journal_lines GROUP BY 1, 2, 3"""
    )
    # Statement-level, with the statement's new lines as a transition table: one check and
    # two set-based upserts per INSERT, whatever its number of lines. Rows are upserted in
    # key order so that two transactions touching the same accounts lock them in the same
    # order (no deadlock between replicas).
    op.execute(
        """CREATE FUNCTION journal_lines_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE off record;
        BEGIN
            SELECT l.entry_id, l.unit, sum(l.debit - l.credit) AS difference INTO off
            FROM journal_lines l
            WHERE l.entry_id IN (SELECT DISTINCT entry_id FROM new_lines)
            GROUP BY l.entry_id, l.unit HAVING sum(l.debit - l.credit) <> 0 LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'unbalanced journal entry %: % differs by %',
                    off.entry_id, off.unit, off.difference USING ERRCODE = 'check_violation';
            END IF;
            INSERT INTO account_balances AS b (ledger_account, unit, balance, lines)
            SELECT ledger_account, unit, sum(debit - credit), count(*) FROM new_lines
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (ledger_account, unit) DO UPDATE
            SET balance = b.balance + excluded.balance, lines = b.lines + excluded.lines;
            INSERT INTO balance_days AS d (ledger_account, unit, day, amount, lines)
            SELECT ledger_account, unit, (effective_at AT TIME ZONE 'UTC')::date,
                   sum(debit - credit), count(*)
            FROM new_lines GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (ledger_account, unit, day) DO UPDATE
            SET amount = d.amount + excluded.amount, lines = d.lines + excluded.lines;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER journal_lines_inserted AFTER INSERT ON journal_lines
        REFERENCING NEW TABLE AS new_lines
        FOR EACH STATEMENT EXECUTE FUNCTION journal_lines_inserted()"""
    )
    op.execute(
        """CREATE FUNCTION journal_entry_is_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM journal_lines WHERE entry_id = NEW.entry_id) THEN
                RAISE EXCEPTION 'journal entry % has no lines', NEW.entry_id
                    USING ERRCODE = 'check_violation';
            END IF;
            IF EXISTS (
                SELECT 1 FROM journal_lines WHERE entry_id = NEW.entry_id
                GROUP BY unit HAVING sum(debit - credit) <> 0
            ) THEN
                RAISE EXCEPTION 'unbalanced journal entry %', NEW.entry_id
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON journal_entries
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION journal_entry_is_balanced()"""
    )
    for table in ("journal_entries", "journal_lines", "trade_cancellations", "ledger_accounts"):
        op.execute(
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only()"""
        )

    op.create_table(
        "account_limits",
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("unit", sa.Text, primary_key=True),
        sa.Column("min_position", MONEY, nullable=False),
        sa.Column("set_by", sa.Text, nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_exceptions",
        sa.Column("exception_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False, index=True),
        sa.Column("account", sa.Text, nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("breaches", JSONB, nullable=False),
        sa.Column("lines", JSONB, nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False, unique=True),
    )
    op.execute(
        """CREATE TRIGGER ledger_exceptions_append_only BEFORE UPDATE OR DELETE
        ON ledger_exceptions FOR EACH ROW EXECUTE FUNCTION journal_is_append_only()"""
    )


def downgrade() -> None:
    op.drop_table("ledger_exceptions")
    op.drop_table("account_limits")
    for table in ("journal_entries", "journal_lines", "trade_cancellations", "ledger_accounts"):
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    op.execute("DROP TRIGGER journal_entry_balanced ON journal_entries")
    op.execute("DROP FUNCTION journal_entry_is_balanced()")
    op.execute("DROP TRIGGER journal_lines_inserted ON journal_lines")
    op.execute("DROP FUNCTION journal_lines_inserted()")
    op.drop_table("balance_days")
    op.drop_table("account_balances")
    op.drop_table("ledger_accounts")
    op.drop_constraint("line_one_side", "journal_lines", type_="check")
    op.drop_index("journal_lines_account_time", "journal_lines")
    op.create_index("ix_journal_lines_ledger_account", "journal_lines", ["ledger_account"])
    op.drop_constraint("entry_kind", "journal_entries", type_="check")
    # Fails, as it should, once a partial settlement is booked.
    op.create_check_constraint(
        "entry_kind", "journal_entries", "kind IN ('pending', 'settled', 'reversal')"
    )
    op.drop_column("journal_lines", "effective_at")
    op.drop_column("journal_entries", "event_type")
    op.drop_column("journal_entries", "effective_at")
