"""Audit HTTP routes: search, lineage, proofs, signed tree heads, verification and export.
Every route that reads records appends a record of the query (who, when, filter, count)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from audit import domain, domain_bundle, domain_signing, handlers, repository
from audit import domain_merkle as merkle
from audit.tables import RecordRow
from bo_common.auth import Principal
from bo_common.problems import Problem
from bo_common.runtime import READERS, RuntimeDep, ServiceRuntime, roles

router = APIRouter(prefix="/v1", tags=["audit"])
Reader = Annotated[Principal, Depends(roles(*READERS))]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key, or an unknown or revoked key"},
    403: {"description": "The key's role is not compliance, ops or admin"},
}
BAD_REQUEST = {
    **AUTH_RESPONSES,
    422: {"description": "A parameter is invalid: `errors` names it and says why"},
}


class RecordOut(BaseModel):
    seq: int
    event: dict[str, Any]
    topic: str | None
    partition: int | None
    offset: int | None
    received_at: datetime
    leaf_hash: str = Field(description="RFC 9162 leaf hash of the record's leaf data (hex)")


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class LineageEvent(BaseModel):
    seq: int
    event_id: str
    type: str
    source: str
    actor: str
    time: str
    causation_id: str | None
    event: dict[str, Any]
    children: list[LineageEvent]


class Lineage(BaseModel):
    trade_id: str
    events: int
    tree: list[LineageEvent]


class SignedTreeHeadOut(BaseModel):
    log: str
    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str
    signature: str


class ProofOut(BaseModel):
    seq: int
    leaf_index: int
    tree_size: int
    leaf: str = Field(description="The record's leaf data, exactly (UTF-8 canonical JSON)")
    leaf_hash: str
    proof: list[str]
    signed_tree_head: SignedTreeHeadOut


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str]
    first_tree_head: SignedTreeHeadOut
    second_tree_head: SignedTreeHeadOut


class PublicKeyOut(BaseModel):
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    public_key_pem: str


class VerificationOut(BaseModel):
    valid: bool
    records_checked: int
    tree_size: int
    root_hash: str
    signed_heads_checked: int
    first_invalid_seq: int | None
    reason: str | None


def _signing_key(runtime: ServiceRuntime) -> Ed25519PrivateKey:
    key: Ed25519PrivateKey = runtime.state["signing_key"]
    return key


def _sign(runtime: ServiceRuntime, size: int, root: bytes) -> domain_signing.SignedTreeHead:
    head = domain_signing.TreeHead(size, root, datetime.now(UTC))
    return domain_signing.sign(head, _signing_key(runtime))


def _event_of(row: RecordRow) -> dict[str, Any]:
    try:
        return domain.read_record(row.payload).event
    except domain.RecordUnreadable as error:
        # Shown, not hidden: /v1/verify names the record.
        return {"unreadable": str(error)}


def _record_out(row: RecordRow) -> RecordOut:
    return RecordOut(
        seq=row.seq,
        event=_event_of(row),
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        received_at=row.recorded_at,
        leaf_hash=merkle.leaf_hash(row.payload).hex(),
    )


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise Problem(
            422,
            "Validation failed",
            "query.cursor: not a cursor this API returned",
            errors=[{"field": "query.cursor", "reason": "not a cursor this API returned"}],
        )
    return int(value)


def _range_checked(filters: repository.Filters) -> repository.Filters:
    if (
        filters.occurred_from is not None
        and filters.occurred_to is not None
        and filters.occurred_from >= filters.occurred_to
    ):
        reason = "must be after `from`"
        raise Problem(
            422,
            "Validation failed",
            f"query.to: {reason}",
            errors=[{"field": "query.to", "reason": reason}],
        )
    return filters


def search_filters(
    trade_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    account: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    type: Annotated[
        str | None, Query(pattern=r"^[a-z_]+\.[a-z_]+$", description="Event type")
    ] = None,
    source: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    occurred_from: Annotated[
        AwareDatetime | None, Query(alias="from", description="Event time, inclusive (UTC)")
    ] = None,
    occurred_to: Annotated[
        AwareDatetime | None, Query(alias="to", description="Event time, exclusive (UTC)")
    ] = None,
) -> repository.Filters:
    return _range_checked(
        repository.Filters(trade_id, account, type, source, actor, occurred_from, occurred_to)
    )


FiltersDep = Annotated[repository.Filters, Depends(search_filters)]
CursorQuery = Annotated[
    str | None, Query(description="`next_cursor` of the page before", max_length=20)
]
OrderQuery = Annotated[
    Literal["asc", "desc"], Query(description="`asc`: oldest first; `desc`: newest first")
]


@router.get(
    "/events",
    response_model=RecordPage,
    summary="Search the record: by trade, account, type, source, actor and event time",
    responses=BAD_REQUEST,
)
async def events(
    principal: Reader,
    runtime: RuntimeDep,
    filters: FiltersDep,
    cursor: CursorQuery = None,
    order: OrderQuery = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RecordPage:
    after = _cursor(cursor)
    async with runtime.sessions() as session:
        rows = await repository.search(session, filters, after=after, limit=limit + 1, order=order)
        page = rows[:limit]
        await handlers.record_query(
            session,
            principal,
            route="GET /v1/events",
            filters={**filters.as_dict(), "cursor": cursor, "order": order, "limit": limit},
            records_returned=len(page),
        )
        await session.commit()
    return RecordPage(
        items=[_record_out(row) for row in page],
        next_cursor=str(page[-1].seq) if len(rows) > limit else None,
    )


def _lineage_out(node: domain.LineageNode) -> LineageEvent:
    event = node.event
    cause = event.get("causation_id")
    return LineageEvent(
        seq=node.seq,
        event_id=str(event["id"]),
        type=str(event["type"]),
        source=str(event["source"]),
        actor=str(event["actor"]),
        time=str(event["time"]),
        causation_id=str(cause) if cause is not None else None,
        event=event,
        children=[_lineage_out(child) for child in node.children],
    )


@router.get(
    "/trades/{trade_id}/lineage",
    response_model=Lineage,
    summary="Every event of a trade, from every service, as a causation tree with times",
    responses={**BAD_REQUEST, 404: {"description": "No event of this trade is recorded"}},
)
async def lineage(
    principal: Reader,
    runtime: RuntimeDep,
    trade_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> Lineage:
    async with runtime.sessions() as session:
        rows = await repository.trade_records(session, trade_id)
        await handlers.record_query(
            session,
            principal,
            route="GET /v1/trades/{trade_id}/lineage",
            filters={"trade_id": trade_id},
            records_returned=len(rows),
        )
        await session.commit()
    if not rows:
        raise Problem(404, "Not found", f"no event of trade {trade_id} is recorded")
    tree = domain.lineage((row.seq, event) for row in rows if "id" in (event := _event_of(row)))
    return Lineage(trade_id=trade_id, events=len(rows), tree=[_lineage_out(n) for n in tree])


@router.get(
    "/tree-head",
    response_model=SignedTreeHeadOut,
    summary="The current tree head (RFC 9162), signed now with the log's Ed25519 key",
    responses=AUTH_RESPONSES,
)
async def tree_head(_: Reader, runtime: RuntimeDep) -> SignedTreeHeadOut:
    async with runtime.sessions() as session:
        signed = await handlers.sign_tree_head(
            session, _signing_key(runtime), now=datetime.now(UTC)
        )
    return SignedTreeHeadOut.model_validate(signed.to_json())


@router.get(
    "/public-key",
    response_model=PublicKeyOut,
    summary="The Ed25519 public key tree heads are signed with",
    responses=AUTH_RESPONSES,
)
async def public_key(_: Reader, runtime: RuntimeDep) -> PublicKeyOut:
    key = _signing_key(runtime).public_key()
    return PublicKeyOut(
        key_id=domain_signing.key_id(key),
        public_key_pem=domain_signing.public_key_pem(key).decode("ascii"),
    )


def _size_checked(size: int | None, current: int, *, field: str) -> int:
    if size is None:
        return current
    if size > current:
        reason = f"the log holds {current} records"
        raise Problem(
            422,
            "Validation failed",
            f"{field}: {reason}",
            errors=[{"field": field, "reason": reason}],
        )
    return size


@router.get(
    "/proofs/{seq}",
    response_model=ProofOut,
    summary="Inclusion proof of a record in a signed tree head (now, or of `tree_size`)",
    responses={**BAD_REQUEST, 404: {"description": "No record with this seq"}},
)
async def proof(
    principal: Reader,
    runtime: RuntimeDep,
    seq: Annotated[int, Path(ge=1)],
    tree_size: Annotated[int | None, Query(ge=1)] = None,
) -> ProofOut:
    async with runtime.sessions() as session:
        current = await repository.tree_size(session)
        size = _size_checked(tree_size, current, field="query.tree_size")
        if seq > current:
            raise Problem(404, "Not found", f"no record {seq}: the log holds {current}")
        if seq > size:
            reason = f"record {seq} is not in a tree of {size} records"
            raise Problem(
                422,
                "Validation failed",
                f"query.tree_size: {reason}",
                errors=[{"field": "query.tree_size", "reason": reason}],
            )
        row = await session.get(RecordRow, seq)
        if row is None:
            raise Problem(404, "Not found", f"record {seq} is missing: run /v1/verify")
        proofs, _, root = await repository.inclusion_proofs(session, [seq - 1], size)
        await handlers.record_query(
            session,
            principal,
            route="GET /v1/proofs/{seq}",
            filters={"seq": seq, "tree_size": size},
            records_returned=1,
        )
        await session.commit()
    document = domain_bundle.proof_document(
        seq=seq, leaf=row.payload, proof=proofs[seq - 1], signed_head=_sign(runtime, size, root)
    )
    return ProofOut.model_validate(document)


@router.get(
    "/consistency",
    response_model=ConsistencyOut,
    summary="Consistency proof (RFC 9162) between two tree sizes, with both heads signed",
    responses=BAD_REQUEST,
)
async def consistency(
    _: Reader,
    runtime: RuntimeDep,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int | None, Query(ge=1, description="Default: the current size")] = None,
) -> ConsistencyOut:
    async with runtime.sessions() as session:
        current = await repository.tree_size(session)
        size = _size_checked(second, current, field="query.second")
        if first > size:
            reason = f"must not exceed second ({size})"
            raise Problem(
                422,
                "Validation failed",
                f"query.first: {reason}",
                errors=[{"field": "query.first", "reason": reason}],
            )
        path, first_root, second_root = await repository.consistency_proof(session, first, size)
    return ConsistencyOut(
        first=first,
        second=size,
        proof=[p.hex() for p in path],
        first_tree_head=SignedTreeHeadOut.model_validate(
            _sign(runtime, first, first_root).to_json()
        ),
        second_tree_head=SignedTreeHeadOut.model_validate(
            _sign(runtime, size, second_root).to_json()
        ),
    )


@router.get(
    "/verify",
    response_model=VerificationOut,
    summary="Recompute the tree from the stored records; name the first that does not match",
    responses=AUTH_RESPONSES,
)
async def verify(principal: Reader, runtime: RuntimeDep) -> VerificationOut:
    async with runtime.sessions() as session:
        public_key = _signing_key(runtime).public_key()
        current_key = domain_signing.key_id(public_key)
        heads: list[domain.SignedHead] = []
        forged: domain_signing.SignedTreeHead | None = None
        for signed in await repository.signed_heads(session):
            if signed.key_id != current_key:
                continue  # signed before a key rotation: its key is not this service's
            if not domain_signing.signature_valid(signed, public_key):
                forged = signed
                break
            heads.append(domain.SignedHead(signed.head.tree_size, signed.head.root_hash))
        size = await repository.tree_size(session)
        check = domain.TreeCheck(heads)
        if forged is None:
            async for record in repository.records_for_verification(session):
                if record.seq > size:
                    break  # appended after the size was read
                if check.feed(record) is not None:
                    break
        outcome = check.finish(size)
        if forged is not None:
            outcome = domain.Verification(
                False, 0, forged.head.tree_size, forged.head.root_hash, len(heads), None,
                f"the stored tree head of {forged.head.tree_size} records does not carry its "
                "signature (altered)",
            )  # fmt: skip
    async with runtime.sessions() as session:
        await handlers.record_query(
            session,
            principal,
            route="GET /v1/verify",
            filters={},
            records_returned=outcome.records_checked,
        )
        await session.commit()
    return VerificationOut(
        valid=outcome.valid,
        records_checked=outcome.records_checked,
        tree_size=outcome.tree_size,
        root_hash=outcome.root_hash.hex(),
        signed_heads_checked=outcome.heads_checked,
        first_invalid_seq=outcome.first_invalid_seq,
        reason=outcome.reason,
    )


@router.get(
    "/export",
    summary="Export records as a zip: JSON lines or CSV, and a manifest with the signed tree "
    "head and every record's inclusion proof (check it with `python -m audit.verifier`)",
    response_class=Response,
    responses={
        **BAD_REQUEST,
        200: {"content": {"application/zip": {}}, "description": "The bundle"},
    },
)
async def export(
    principal: Reader,
    runtime: RuntimeDep,
    filters: FiltersDep,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    cursor: CursorQuery = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    settings_limit: int = getattr(runtime.settings, "export_max_records", 10_000)
    limit = min(limit or settings_limit, settings_limit)
    after = _cursor(cursor)
    async with runtime.sessions() as session:
        size = await repository.tree_size(session)
        rows = await repository.search(
            session, filters, after=after, limit=limit + 1, order="asc", up_to_seq=size
        )
        page = rows[:limit]
        proofs, _, root = await repository.inclusion_proofs(
            session, [row.seq - 1 for row in page], size
        )
        await handlers.record_query(
            session,
            principal,
            route="GET /v1/export",
            filters={**filters.as_dict(), "format": format, "cursor": cursor, "limit": limit},
            records_returned=len(page),
        )
        await session.commit()
    next_cursor = page[-1].seq if len(rows) > limit else None
    bundle = domain_bundle.build_bundle(
        [domain_bundle.ExportedRecord(r.seq, r.payload, proofs[r.seq - 1]) for r in page],
        signed_head=_sign(runtime, size, root),
        export_format=format,
        filters=filters.as_dict(),
        next_cursor=next_cursor,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="audit-export-{stamp}.zip"'}
    if next_cursor is not None:
        headers["X-Next-Cursor"] = str(next_cursor)
    return Response(bundle, media_type="application/zip", headers=headers)
