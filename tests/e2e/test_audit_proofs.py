"""The audit log proves what it holds: every event of a trade is recorded once with its
topic, partition and offset; inclusion and consistency proofs and signed tree heads check
out with a verifier written here from RFC 9162's definitions (not the service's code); an
export verifies offline with only the public key; tree heads are published on
audit.events without feeding on themselves."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bo_common.envelope import new_event
from bo_common.topics import AUDIT_EVENTS
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth, eventually, scalar

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Events of three services: the gateway, compliance and the ledger (its pending entry).
RECORDED_TYPES = {"trade.captured", "compliance.trade_cleared", "ledger.posted"}


# RFC 9162 section 2.1, from the definitions: MTH, PATH, SUBPROOF, read backwards.
def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes:
    """PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else
    PATH(m - k, D[k:n]) : MTH(D[0:k]); so the last element pairs at the top."""
    if n == 1:
        if path:
            raise ValueError("proof too long")
        return leaf
    if not path:
        raise ValueError("proof too short")
    k = largest_power_of_two_below(n)
    *rest, top = path
    if m < k:
        return node(root_from_path(m, k, leaf, rest), top)
    return node(top, root_from_path(m - k, n - k, leaf, rest))


def roots_from_consistency(
    m: int, n: int, proof: list[bytes], first_root: bytes, whole: bool = True
) -> tuple[bytes, bytes]:
    """SUBPROOF(m, D[n], b), read backwards: the roots of D[0:m] and D[0:n] it implies."""
    if m == n:
        if whole:
            if proof:
                raise ValueError("proof too long")
            return first_root, first_root
        if len(proof) != 1:
            raise ValueError("proof has the wrong length")
        return proof[0], proof[0]
    if not proof:
        raise ValueError("proof too short")
    k = largest_power_of_two_below(n)
    *rest, top = proof
    if m <= k:
        old, new = roots_from_consistency(m, k, rest, first_root, whole)
        return old, node(new, top)
    old, new = roots_from_consistency(m - k, n - k, rest, first_root, False)
    return node(top, old), node(top, new)


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = largest_power_of_two_below(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def check_signed_head(head: dict[str, Any], public_pem: str) -> bytes:
    """The signature covers the canonical JSON of log, tree_size, root_hash and timestamp."""
    signed = json.dumps(
        {k: head[k] for k in ("log", "tree_size", "root_hash", "timestamp")},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    key = load_pem_public_key(public_pem.encode())
    key.verify(base64.b64decode(head["signature"]), signed)  # type: ignore[union-attr,call-arg]
    raw = key.public_bytes_raw()  # type: ignore[union-attr]
    assert head["key_id"] == hashlib.sha256(raw).hexdigest()
    return bytes.fromhex(head["root_hash"])


@pytest.fixture
async def audit(stack: Stack) -> Any:
    async with httpx.AsyncClient(base_url=stack.url("audit"), timeout=30) as client:
        yield client


async def recorded_trade(
    gateway: httpx.AsyncClient, audit: httpx.AsyncClient, keys: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    response = await gateway.post("/v1/trades", json=a_trade(), headers=auth(keys["trader"]))
    assert response.status_code == 201, response.text
    trade_id = response.json()["trade_id"]

    async def recorded() -> list[dict[str, Any]] | None:
        page = (
            await audit.get(
                "/v1/events",
                params={"trade_id": trade_id, "limit": 1000},
                headers=auth(keys["compliance"]),
            )
        ).json()
        items: list[dict[str, Any]] = page["items"]
        types = {item["event"]["type"] for item in items}
        return items if types >= RECORDED_TYPES else None

    return trade_id, await eventually(recorded, "the trade's events in the audit log")


async def public_pem(audit: httpx.AsyncClient, keys: dict[str, str]) -> str:
    body = (await audit.get("/v1/public-key", headers=auth(keys["compliance"]))).json()
    assert body["algorithm"] == "Ed25519"
    return str(body["public_key_pem"])


async def test_every_event_of_a_trade_is_recorded_once_with_where_it_was_read(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    databases: Any,
) -> None:
    trade_id, items = await recorded_trade(gateway, audit, keys)

    assert len({item["event"]["id"] for item in items}) == len(items)
    for item in items:
        assert item["topic"] == f"{item['event']['type'].split('.')[0]}.events"
        assert item["partition"] is not None and 0 <= item["partition"] < 6
        assert item["offset"] is not None and item["offset"] >= 0
        leaf = json.loads(
            await scalar(
                databases["audit"],
                "SELECT convert_from(payload, 'UTF8') FROM audit_records WHERE seq = :seq",
                seq=item["seq"],
            )
        )
        assert leaf["event"] == item["event"]
        assert (leaf["seq"], leaf["topic"], leaf["partition"], leaf["offset"]) == (
            item["seq"], item["topic"], item["partition"], item["offset"],
        )  # fmt: skip
    duplicates = await scalar(
        databases["audit"],
        "SELECT count(*) - count(DISTINCT event_id) FROM audit_records "
        "WHERE correlation_id = :trade_id",
        trade_id=trade_id,
    )
    assert duplicates == 0


async def test_a_redelivered_event_is_appended_once(
    keys: dict[str, str], audit: httpx.AsyncClient, producer: Any, databases: Any
) -> None:
    event = new_event(
        type="audit.redelivery_checked",
        source="tests",
        subject=f"redelivery-{uuid.uuid4()}",
        actor="tests",
        data={"purpose": "the same event id delivered three times"},
    )
    # Twice in one batch, and once more after the first was applied and committed.
    await producer.send_and_wait(AUDIT_EVENTS, event.to_bytes(), key=b"redelivery")
    await producer.send_and_wait(AUDIT_EVENTS, event.to_bytes(), key=b"redelivery")

    async def appended() -> int:
        return int(
            await scalar(
                databases["audit"],
                "SELECT count(*) FROM audit_records WHERE event_id = :id",
                id=event.id,
            )
        )

    assert await eventually(appended, "the event appended") == 1
    await producer.send_and_wait(AUDIT_EVENTS, event.to_bytes(), key=b"redelivery")
    marker = new_event(
        type="audit.redelivery_checked", source="tests", subject="marker", actor="tests", data={}
    )
    await producer.send_and_wait(AUDIT_EVENTS, marker.to_bytes(), key=b"redelivery")

    async def marker_appended() -> int:
        return int(
            await scalar(
                databases["audit"],
                "SELECT count(*) FROM audit_records WHERE event_id = :id",
                id=marker.id,
            )
        )

    # Same key, same partition: once the later marker is in, the third copy was read.
    await eventually(marker_appended, "the marker appended")
    assert await appended() == 1


async def test_inclusion_proofs_of_a_trade_verify_against_the_signed_head(
    keys: dict[str, str], gateway: httpx.AsyncClient, audit: httpx.AsyncClient
) -> None:
    _, items = await recorded_trade(gateway, audit, keys)
    pem = await public_pem(audit, keys)

    for item in items:
        proof = (await audit.get(f"/v1/proofs/{item['seq']}", headers=auth(keys["ops"]))).json()
        root = check_signed_head(proof["signed_tree_head"], pem)
        leaf = proof["leaf"].encode("utf-8")
        assert json.loads(leaf)["event"] == item["event"]
        assert leaf_hash(leaf).hex() == item["leaf_hash"] == proof["leaf_hash"]
        path = [bytes.fromhex(h) for h in proof["proof"]]
        assert root_from_path(item["seq"] - 1, proof["tree_size"], leaf_hash(leaf), path) == root

    # The proof at an older tree size verifies against the head of that size.
    first = items[0]["seq"]
    older = (
        await audit.get(
            f"/v1/proofs/{first}", params={"tree_size": first}, headers=auth(keys["ops"])
        )
    ).json()
    assert older["tree_size"] == first
    root = check_signed_head(older["signed_tree_head"], pem)
    path = [bytes.fromhex(h) for h in older["proof"]]
    assert root_from_path(first - 1, first, bytes.fromhex(older["leaf_hash"]), path) == root


async def test_consistency_proofs_show_the_log_only_grew(
    keys: dict[str, str], gateway: httpx.AsyncClient, audit: httpx.AsyncClient
) -> None:
    pem = await public_pem(audit, keys)
    before = (await audit.get("/v1/tree-head", headers=auth(keys["compliance"]))).json()
    first_root = check_signed_head(before, pem)
    await recorded_trade(gateway, audit, keys)

    body = (
        await audit.get(
            "/v1/consistency",
            params={"first": before["tree_size"]},
            headers=auth(keys["compliance"]),
        )
    ).json()
    assert body["second"] > body["first"] == before["tree_size"]
    assert check_signed_head(body["first_tree_head"], pem) == first_root
    second_root = check_signed_head(body["second_tree_head"], pem)
    proof = [bytes.fromhex(h) for h in body["proof"]]
    assert roots_from_consistency(body["first"], body["second"], proof, first_root) == (
        first_root,
        second_root,
    )
    with pytest.raises(ValueError):
        roots_from_consistency(body["first"], body["second"], proof[:-1], first_root)


async def test_a_tree_head_signed_by_another_key_is_refused_by_the_check(
    keys: dict[str, str], audit: httpx.AsyncClient
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    head = (await audit.get("/v1/tree-head", headers=auth(keys["compliance"]))).json()
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(InvalidSignature):
        check_signed_head(head, other)
    forged = {**head, "tree_size": head["tree_size"] + 1}
    with pytest.raises(InvalidSignature):
        check_signed_head(forged, await public_pem(audit, keys))


def offline_verifier(*args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "audit.verifier", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout or result.stderr)


@pytest.mark.parametrize("export_format", ["jsonl", "csv"])
async def test_an_export_verifies_offline_with_only_the_public_key(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    tmp_path: Path,
    export_format: str,
) -> None:
    trade_id, items = await recorded_trade(gateway, audit, keys)
    pem = await public_pem(audit, keys)
    response = await audit.get(
        "/v1/export",
        params={"trade_id": trade_id, "format": export_format},
        headers=auth(keys["compliance"]),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    (tmp_path / "key.pem").write_text(pem)
    (tmp_path / "export.zip").write_bytes(response.content)

    code, outcome = offline_verifier(
        "bundle", str(tmp_path / "export.zip"), "--public-key", str(tmp_path / "key.pem")
    )
    assert code == 0, outcome
    assert outcome["valid"] is True
    # The trade's later events (settlement) may have arrived since it was listed.
    assert outcome["records_checked"] >= len(items)

    # And independently of the service's code: every line is a leaf in the signed tree.
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        body = archive.read(manifest["records_file"])
    root = check_signed_head(manifest["signed_tree_head"], pem)
    size = manifest["signed_tree_head"]["tree_size"]
    if export_format == "jsonl":
        leaves = [line for line in body.split(b"\n") if line]
    else:
        leaves = [row["leaf"].encode() for row in csv.DictReader(io.StringIO(body.decode()))]
    assert len(leaves) == outcome["records_checked"]
    assert [json.loads(leaf)["event"]["id"] for leaf in leaves][: len(items)] == [
        item["event"]["id"] for item in items
    ]
    for leaf, entry in zip(leaves, manifest["proofs"], strict=True):
        path = [bytes.fromhex(h) for h in entry["proof"]]
        assert root_from_path(entry["seq"] - 1, size, leaf_hash(leaf), path) == root

    # A proof document verifies offline too.
    proof = (await audit.get(f"/v1/proofs/{items[0]['seq']}", headers=auth(keys["ops"]))).json()
    (tmp_path / "proof.json").write_text(json.dumps(proof))
    code, outcome = offline_verifier(
        "proof", str(tmp_path / "proof.json"), "--public-key", str(tmp_path / "key.pem")
    )
    assert code == 0 and outcome["valid"] is True, outcome


async def test_an_export_changed_after_the_fact_is_refused_offline_naming_the_record(
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    audit: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    trade_id, items = await recorded_trade(gateway, audit, keys)
    (tmp_path / "key.pem").write_text(await public_pem(audit, keys))
    bundle = (
        await audit.get(
            "/v1/export", params={"trade_id": trade_id}, headers=auth(keys["compliance"])
        )
    ).content
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        manifest = archive.read("manifest.json")
        lines = archive.read("records.jsonl").split(b"\n")
    changed = lines[1].replace(b'"actor":"', b'"actor":"X', 1)
    assert changed != lines[1]

    def rezip(records: list[bytes]) -> Path:
        path = tmp_path / f"bundle-{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("manifest.json", manifest)
            archive.writestr("records.jsonl", b"\n".join(records))
        return path

    key = str(tmp_path / "key.pem")
    code, outcome = offline_verifier(
        "bundle", str(rezip([lines[0], changed, *lines[2:]])), "--public-key", key
    )
    assert code == 1 and outcome["first_invalid_seq"] == items[1]["seq"], outcome
    code, outcome = offline_verifier(
        "bundle", str(rezip([lines[1], lines[0], *lines[2:]])), "--public-key", key
    )
    assert code == 1 and outcome["first_invalid_seq"] == items[0]["seq"], outcome
    code, outcome = offline_verifier(
        "bundle", str(rezip([lines[0], *lines[2:]])), "--public-key", key
    )
    assert code == 1 and "removed" in outcome["reason"], outcome


async def test_tree_heads_are_published_on_audit_events_and_do_not_feed_on_themselves(
    keys: dict[str, str], gateway: httpx.AsyncClient, audit: httpx.AsyncClient, databases: Any
) -> None:
    await recorded_trade(gateway, audit, keys)
    pem = await public_pem(audit, keys)

    async def published_head() -> dict[str, Any] | None:
        page = (
            await audit.get(
                "/v1/events",
                params={"type": "audit.tree_head_signed", "order": "desc", "limit": 1},
                headers=auth(keys["compliance"]),
            )
        ).json()
        return page["items"][0] if page["items"] else None

    record = await eventually(published_head, "a tree head recorded from audit.events")
    assert record["topic"] == "audit.events"
    data = record["event"]["data"]
    check_signed_head(data, pem)
    assert data["tree_size"] < record["seq"]  # it was signed before it was read back

    # Each head's own record comes back from audit.events; had it counted as news, every
    # head would cause the next, forever. Every head covers some record that is not a head.
    await asyncio.sleep(12)
    heads_caused_by_heads = await scalar(
        databases["audit"],
        """SELECT count(*) FROM (
             SELECT tree_size, lag(tree_size) OVER (ORDER BY tree_size) AS previous
             FROM signed_tree_heads) AS heads
           WHERE previous IS NOT NULL AND NOT EXISTS (
             SELECT 1 FROM audit_records WHERE seq > heads.previous
               AND seq <= heads.tree_size AND event_type <> 'audit.tree_head_signed')""",
    )
    assert heads_caused_by_heads == 0
    assert await scalar(databases["audit"], "SELECT count(*) FROM signed_tree_heads") >= 2
