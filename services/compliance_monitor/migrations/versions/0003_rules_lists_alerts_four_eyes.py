"""Versioned rules with the default rule set, the restricted and watch lists as dated
entries, counterparty names, the projection of trades seen (terms, positions, last prices),
alert severity, evidence and workflow, and four-eyes proposals on holds.

Revision ID: 0003
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# The default rules are in force for every trade, including those of events replayed from
# before this revision.
SINCE = datetime(2000, 1, 1, tzinfo=UTC)

# The default rule set (documented in services/compliance_monitor/README.md). The
# notional limit that held trades before keeps its name, thresholds and effect.
DEFAULT_RULES = [
    ("restricted-list", "restricted_list", "hold", "critical", {}),
    ("watch-list", "watch_list", "hold", "critical", {"name_match_threshold": 85}),
    (
        "notional-limit",
        "large_trade",
        "hold",
        "high",
        {
            "thresholds": {"USD": "10000000", "EUR": "10000000", "GBP": "8000000"},
            "default_threshold": "10000000",
        },
    ),
    (
        "large-trade",
        "large_trade",
        "alert",
        "medium",
        {
            "thresholds": {"USD": "1000000", "EUR": "1000000", "GBP": "800000"},
            "default_threshold": "1000000",
        },
    ),
    (
        "wash-trade",
        "wash_trade",
        "alert",
        "high",
        {"window_seconds": 300, "price_band_percent": "1", "groups": {}},
    ),
    (
        "position-limit",
        "position_limit",
        "alert",
        "medium",
        {"default_max_quantity": "1000000", "max_quantity": {}},
    ),
    (
        "concentration-limit",
        "concentration_limit",
        "alert",
        "low",
        {"max_percent": "50", "min_holdings_value": "1000000"},
    ),
    ("trading-session", "trading_session", "alert", "low", {"grace_minutes": 0}),
    (
        "price-deviation",
        "price_deviation",
        "alert",
        "medium",
        {"band_percent": "10", "max_reference_age_seconds": 432000},
    ),
]


def upgrade() -> None:
    op.create_table(
        "rule_versions",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("changed_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    connection = op.get_bind()
    enabled = {
        name: on for name, on in connection.execute(sa.text("SELECT name, enabled FROM rules"))
    }
    for name, kind, action, severity, parameters in DEFAULT_RULES:
        connection.execute(
            sa.text(
                "INSERT INTO rule_versions (name, version, kind, enabled, action, severity, "
                "parameters, effective_from, changed_by, reason) VALUES (:name, 1, :kind, "
                ":enabled, :action, :severity, CAST(:parameters AS jsonb), :since, "
                "'migration:0003', 'default rule set')"
            ),
            {
                "name": name,
                "kind": kind,
                "enabled": enabled.get(name, True),
                "action": action,
                "severity": severity,
                "parameters": json.dumps(parameters),
                "since": SINCE,
            },
        )
    op.drop_table("rules")

    op.create_table(
        "list_entries",
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("list", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.Column("added_by", sa.Text, nullable=False),
        sa.Column("removed_at", TS),
        sa.Column("removed_by", sa.Text),
        sa.Column("removal_reason", sa.Text),
    )
    op.create_index("list_entries_value", "list_entries", ["list", "value"])
    # One live entry per value and list.
    op.create_index(
        "list_entries_one_live",
        "list_entries",
        ["list", "value"],
        unique=True,
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.execute(
        "INSERT INTO list_entries (entry_id, list, value, reason, added_at, added_by) "
        "SELECT gen_random_uuid()::text, 'restricted', isin, reason, added_at, 'migration:0003' "
        "FROM restricted_list"
    )
    op.drop_table("restricted_list")
    op.create_table(
        "counterparties",
        sa.Column("lei", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
    )

    for column, type_ in (
        ("side", sa.Text),
        ("isin", sa.Text),
        ("quantity", sa.Numeric),
        ("price", sa.Numeric),
        ("currency", sa.Text),
        ("trade_time", TS),
    ):
        op.add_column("trades", sa.Column(column, type_))
    op.create_index("trades_isin_time", "trades", ["isin", "trade_time"])
    op.create_table(
        "positions",
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("isin", sa.Text, primary_key=True),
        sa.Column("quantity", sa.Numeric, nullable=False),
    )
    op.create_table(
        "last_prices",
        sa.Column("isin", sa.Text, primary_key=True),
        sa.Column("currency", sa.Text, primary_key=True),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("trade_time", TS, nullable=False),
        sa.Column("trade_id", sa.Text, nullable=False),
    )

    # Alerts so far were raised by the two rules that held: blocking, high.
    op.add_column(
        "alerts", sa.Column("rule_version", sa.Integer, nullable=False, server_default="1")
    )
    op.add_column("alerts", sa.Column("severity", sa.Text, nullable=False, server_default="high"))
    op.add_column(
        "alerts", sa.Column("blocking", sa.Boolean, nullable=False, server_default="true")
    )
    op.add_column("alerts", sa.Column("evidence", JSONB, nullable=False, server_default="{}"))
    op.add_column("alerts", sa.Column("assignee", sa.Text))
    op.add_column("alerts", sa.Column("updated_at", TS))
    op.add_column("alerts", sa.Column("closed_reason", sa.Text))
    op.execute("UPDATE alerts SET updated_at = raised_at")
    op.alter_column("alerts", "updated_at", nullable=False)
    for column in ("rule_version", "severity", "blocking", "evidence"):
        op.alter_column("alerts", column, server_default=None)
    op.create_index("alerts_raised", "alerts", ["raised_at", "alert_id"])
    op.create_index("alerts_state", "alerts", ["state"])
    op.create_table(
        "alert_actions",
        sa.Column("action_id", sa.Text, primary_key=True),
        sa.Column("alert_id", sa.Text, nullable=False, index=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_state", sa.Text, nullable=False),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("assignee", sa.Text),
        sa.Column("at", TS, nullable=False),
    )
    op.create_table(
        "hold_proposals",
        sa.Column("proposal_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("proposed_by_key", sa.Text, nullable=False),
        sa.Column("proposed_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("proposed_at", TS, nullable=False),
        sa.Column("decided_by_key", sa.Text),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_reason", sa.Text),
        sa.Column("decided_at", TS),
    )
    op.create_index(
        "hold_proposals_one_pending",
        "hold_proposals",
        ["trade_id"],
        unique=True,
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("hold_proposals")
    op.drop_table("alert_actions")
    op.drop_index("alerts_state", "alerts")
    op.drop_index("alerts_raised", "alerts")
    for column in (
        "closed_reason",
        "updated_at",
        "assignee",
        "evidence",
        "blocking",
        "severity",
        "rule_version",
    ):
        op.drop_column("alerts", column)
    op.drop_table("last_prices")
    op.drop_table("positions")
    op.drop_index("trades_isin_time", "trades")
    for column in ("trade_time", "currency", "price", "quantity", "isin", "side"):
        op.drop_column("trades", column)
    op.drop_table("counterparties")
    op.create_table(
        "restricted_list",
        sa.Column("isin", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("added_at", TS, nullable=False),
    )
    op.execute(
        "INSERT INTO restricted_list (isin, reason, added_at) SELECT value, reason, added_at "
        "FROM list_entries WHERE list = 'restricted' AND removed_at IS NULL"
    )
    op.drop_table("list_entries")
    rules = op.create_table(
        "rules",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
    )
    # Revision 0002 knew two rules; the others are dropped with their versions.
    connection = op.get_bind()
    latest = {
        name: on
        for name, on in connection.execute(
            sa.text(
                "SELECT DISTINCT ON (name) name, enabled FROM rule_versions "
                "ORDER BY name, version DESC"
            )
        )
    }
    op.bulk_insert(
        rules,
        [
            {
                "name": "notional-limit",
                "kind": "notional_limit",
                "enabled": latest.get("notional-limit", True),
                "parameters": {
                    "limits": {"USD": "10000000", "EUR": "10000000", "GBP": "8000000"},
                    "default_limit": "10000000",
                },
            },
            {
                "name": "restricted-list",
                "kind": "restricted_list",
                "enabled": latest.get("restricted-list", True),
                "parameters": {},
            },
        ],
    )
    op.drop_table("rule_versions")
