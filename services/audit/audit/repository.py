"""Named queries of the audit log: search, the tree's size and stored nodes, proofs built
from them, the records in seq order for verification, and the signed heads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from audit import domain, domain_signing
from audit import domain_merkle as merkle
from audit.handlers import TREE
from audit.tables import NodeRow, RecordRow, SignedHeadRow, TreeStateRow


@dataclass(frozen=True)
class Filters:
    trade_id: str | None = None
    account: str | None = None
    type: str | None = None
    source: str | None = None
    actor: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "trade_id": self.trade_id,
            "account": self.account,
            "type": self.type,
            "source": self.source,
            "actor": self.actor,
            "from": self.occurred_from.isoformat() if self.occurred_from else None,
            "to": self.occurred_to.isoformat() if self.occurred_to else None,
        }


Order = Literal["asc", "desc"]


async def search(
    session: AsyncSession,
    filters: Filters,
    *,
    after: int | None,
    limit: int,
    order: Order,
    up_to_seq: int | None = None,
) -> list[RecordRow]:
    """Keyset pages on seq: seqs are assigned under the tree's row lock and become visible
    in order, so paging never skips or repeats a record while others are appended."""
    query = sa.select(RecordRow)
    conditions = {
        RecordRow.correlation_id: filters.trade_id,
        RecordRow.account: filters.account,
        RecordRow.event_type: filters.type,
        RecordRow.source: filters.source,
        RecordRow.actor: filters.actor,
    }
    for column, value in conditions.items():
        if value is not None:
            query = query.where(column == value)
    if filters.occurred_from is not None:
        query = query.where(RecordRow.occurred_at >= filters.occurred_from)
    if filters.occurred_to is not None:
        query = query.where(RecordRow.occurred_at < filters.occurred_to)
    if up_to_seq is not None:
        query = query.where(RecordRow.seq <= up_to_seq)
    if order == "asc":
        if after is not None:
            query = query.where(RecordRow.seq > after)
        query = query.order_by(RecordRow.seq)
    else:
        if after is not None:
            query = query.where(RecordRow.seq < after)
        query = query.order_by(RecordRow.seq.desc())
    return list((await session.execute(query.limit(limit))).scalars())


async def trade_records(session: AsyncSession, trade_id: str) -> list[RecordRow]:
    query = sa.select(RecordRow).where(RecordRow.correlation_id == trade_id).order_by(RecordRow.seq)
    return list((await session.execute(query)).scalars())


async def tree_size(session: AsyncSession) -> int:
    size = await session.scalar(sa.select(TreeStateRow.size).where(TreeStateRow.tree == TREE))
    return int(size or 0)


async def nodes(
    session: AsyncSession, wanted: Iterable[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    wanted = list(wanted)
    if not wanted:
        return {}
    want = (
        sa.func.unnest(
            sa.cast([level for level, _ in wanted], sa.ARRAY(sa.SmallInteger)),
            sa.cast([index for _, index in wanted], sa.ARRAY(sa.BigInteger)),
        )
        .table_valued("level", "index")
        .render_derived(name="wanted")
    )
    query = sa.select(NodeRow.level, NodeRow.index, NodeRow.hash).join(
        want, sa.and_(NodeRow.level == want.c.level, NodeRow.index == want.c.index)
    )
    return {(level, index): hash_ for level, index, hash_ in await session.execute(query)}


async def inclusion_proofs(
    session: AsyncSession, indexes: Iterable[int], size: int
) -> tuple[dict[int, list[bytes]], dict[int, bytes], bytes]:
    """Inclusion proofs of the leaves at these indexes in the tree of `size`, their leaf
    hashes, and that tree's root, from one query of the stored nodes."""
    indexes = list(indexes)
    ranges = {index: merkle.inclusion_ranges(index, size) for index in indexes}
    wanted = set(merkle.root_nodes(size))
    wanted.update((0, index) for index in indexes)
    for index_ranges in ranges.values():
        wanted |= merkle.nodes_for(index_ranges)
    stored = await nodes(session, wanted)
    proofs = {index: merkle.hashes_of(r, stored) for index, r in ranges.items()}
    leaves = {index: stored[(0, index)] for index in indexes}
    return proofs, leaves, merkle.frontier_of(size, stored).root()


async def consistency_proof(
    session: AsyncSession, first: int, second: int
) -> tuple[list[bytes], bytes, bytes]:
    ranges = merkle.consistency_ranges(first, second)
    wanted = (
        merkle.nodes_for(ranges) | set(merkle.root_nodes(first)) | set(merkle.root_nodes(second))
    )
    stored = await nodes(session, wanted)
    return (
        merkle.hashes_of(ranges, stored),
        merkle.frontier_of(first, stored).root(),
        merkle.frontier_of(second, stored).root(),
    )


async def signed_heads(session: AsyncSession) -> list[domain_signing.SignedTreeHead]:
    rows = await session.execute(
        sa.select(
            SignedHeadRow.tree_size,
            SignedHeadRow.root_hash,
            SignedHeadRow.signed_at,
            SignedHeadRow.key_id,
            SignedHeadRow.signature,
        ).order_by(SignedHeadRow.tree_size)
    )
    return [
        domain_signing.SignedTreeHead(
            domain_signing.TreeHead(size, bytes(root), signed_at), key_id, bytes(signature)
        )
        for size, root, signed_at, key_id, signature in rows
    ]


async def records_for_verification(
    session: AsyncSession, *, batch: int = 5000
) -> AsyncIterator[domain.StoredRecord]:
    """Every record in seq order with its stored leaf hash, streamed."""
    leaf = sa.orm.aliased(NodeRow)
    query = (
        sa.select(
            RecordRow.seq,
            RecordRow.payload,
            RecordRow.event_id,
            RecordRow.event_type,
            RecordRow.correlation_id,
            RecordRow.account,
            RecordRow.actor,
            RecordRow.source,
            leaf.hash,
        )
        .outerjoin(leaf, sa.and_(leaf.level == 0, leaf.index == RecordRow.seq - 1))
        .order_by(RecordRow.seq)
        .execution_options(yield_per=batch)
    )
    result = await session.stream(query)
    async for row in result:
        yield domain.StoredRecord(
            seq=row[0],
            leaf=bytes(row[1]),
            event_id=str(row[2]),
            event_type=row[3],
            correlation_id=row[4],
            account=row[5],
            actor=row[6],
            source=row[7],
            stored_leaf_hash=bytes(row[8]) if row[8] is not None else None,
        )
