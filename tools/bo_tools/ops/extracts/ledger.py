"""The ledger's journal lines per trade, summed on the client's accounts, and the trial
balance.

The client's accounts are `client:<account>:<what>` and the pending ones end in `_pending`
(ledger/domain.py): settlement moves a trade from the pending to the settled accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bo_tools.ops.reconciliation import LedgerFacts

ZERO = Decimal(0)


async def facts(
    connection: AsyncConnection, units: Mapping[str, tuple[str, str]]
) -> list[LedgerFacts]:
    """`units`: trade id -> (its ISIN, its currency), the units of its securities and cash."""
    ids = list(units)
    entries = {
        r.trade_id: int(r.entries)
        for r in await connection.execute(
            sa.text(
                "SELECT trade_id, count(*) AS entries FROM journal_entries "
                "WHERE trade_id = ANY(:ids) GROUP BY trade_id"
            ),
            {"ids": ids},
        )
    }
    unbalanced = {
        r.trade_id: int(r.unbalanced)
        for r in await connection.execute(
            sa.text(
                "SELECT trade_id, count(DISTINCT entry_id) AS unbalanced FROM ("
                " SELECT e.trade_id, e.entry_id, l.unit FROM journal_entries e"
                " JOIN journal_lines l USING (entry_id) WHERE e.trade_id = ANY(:ids)"
                " GROUP BY e.trade_id, e.entry_id, l.unit HAVING sum(l.debit) <> sum(l.credit)"
                ") u GROUP BY trade_id"
            ),
            {"ids": ids},
        )
    }
    nets: dict[tuple[str, str, bool], Decimal] = {}
    for r in await connection.execute(
        sa.text(
            "SELECT e.trade_id, l.unit, l.ledger_account NOT LIKE '%\\_pending' AS settled,"
            " sum(l.debit - l.credit) AS net"
            " FROM journal_entries e JOIN journal_lines l USING (entry_id)"
            " WHERE e.trade_id = ANY(:ids) AND l.ledger_account LIKE 'client:%'"
            " GROUP BY e.trade_id, l.unit, settled"
        ),
        {"ids": ids},
    ):
        nets[(r.trade_id, r.unit, bool(r.settled))] = Decimal(r.net)

    def net(trade_id: str, unit: str, *, settled_only: bool) -> Decimal:
        settled = nets.get((trade_id, unit, True), ZERO)
        return settled if settled_only else settled + nets.get((trade_id, unit, False), ZERO)

    return [
        LedgerFacts(
            trade_id=trade_id,
            entries=count,
            unbalanced_entries=unbalanced.get(trade_id, 0),
            client_securities=net(trade_id, units[trade_id][0], settled_only=False),
            client_securities_settled=net(trade_id, units[trade_id][0], settled_only=True),
            client_cash=net(trade_id, units[trade_id][1], settled_only=False),
            client_cash_settled=net(trade_id, units[trade_id][1], settled_only=True),
        )
        for trade_id, count in entries.items()
    ]


async def trial_balance(connection: AsyncConnection) -> dict[str, Decimal]:
    """Debits minus credits per unit over the whole journal: zero in a balanced book."""
    rows = await connection.execute(
        sa.text("SELECT unit, sum(debit) - sum(credit) AS total FROM journal_lines GROUP BY unit")
    )
    return {r.unit: Decimal(r.total) for r in rows}
