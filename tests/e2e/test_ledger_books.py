"""The ledger's books across the whole cluster: after a load of mixed trades (bought and
sold, several accounts, ISINs and currencies, some held, amended or cancelled) the trial
balance is zero in every unit and each client's securities and cash, settled and pending,
match the trades it did; as-of balances and statements; limits refusing a posting into an
exception; and the routes' auth and 4xx answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bo_common.auth import Role
from bo_common.contracts.csd import settlement_amount
from bo_common.db import make_engine, make_sessionmaker
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import BY_NAME, Stack
from gateway import admin
from tests.conftest import a_trade, auth, eventually

pytestmark = pytest.mark.e2e

LEIS = ("784F5XWPLTWKTBV3E584", "8I5DZWZKVSZI1NUHU748")
# (ISIN, currency, venue): markets with SSIs in the demo data.
INSTRUMENTS = (
    ("US0378331005", "USD", "XNYS"),
    ("GB0002634946", "GBP", "XLON"),
)
# Over the 10,000,000 notional limit: compliance holds it, so it stays pending.
HELD = {"quantity": "1000000", "price": "20"}


@pytest.fixture(scope="module")
async def desk(stack: Stack) -> AsyncIterator[tuple[list[str], str]]:
    """Fresh accounts on a desk of their own and a trader key for it, so that the balances
    are those of this test's trades alone."""
    engine = make_engine(stack.database_url(BY_NAME["gateway"]), pool_size=1)
    sessions = make_sessionmaker(engine)
    suffix = uuid.uuid4().hex[:6].upper()
    accounts = [f"LB-{suffix}-{n}" for n in range(3)]
    name = f"L{suffix}"
    await admin.create_desk(UnitOfWork(sessions), name=name, accounts=accounts)
    key = await admin.create_key(
        UnitOfWork(sessions), role=Role.TRADER, name=f"ledger-{suffix}", desk=name
    )
    yield accounts, key
    await engine.dispose()


@pytest.fixture
async def ledger(stack: Stack, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url("ledger"), timeout=10, headers=auth(keys["compliance"])
    ) as client:
        yield client


def mixed_trades(accounts: list[str], count: int) -> list[dict[str, Any]]:
    trades = []
    for n in range(count):
        isin, currency, venue = INSTRUMENTS[n % len(INSTRUMENTS)]
        trades.append(
            a_trade(
                account=accounts[n % len(accounts)],
                side="BUY" if n % 3 else "SELL",
                isin=isin,
                currency=currency,
                venue=venue,
                counterparty_lei=LEIS[n % 2],
                quantity=str(10 + n),
                # Half a cent on odd trades: the cash is rounded as settlement rounds it.
                price=f"{100 + n}.{5 if n % 2 else 0}05",
            )
        )
    return trades


def expected_positions(
    settled: list[dict[str, Any]], pending: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Decimal]]:
    """(account, unit) -> {"settled": ..., "pending": ...}, from the trades alone."""
    out: dict[tuple[str, str], dict[str, Decimal]] = {}
    for phase, trades in (("settled", settled), ("pending", pending)):
        for trade in trades:
            sign = 1 if trade["side"] == "BUY" else -1
            quantity = Decimal(trade["quantity"])
            cash = settlement_amount(quantity * Decimal(trade["price"]), trade["currency"])
            for unit, amount in (
                (trade["isin"], sign * quantity),
                (trade["currency"], -sign * cash),
            ):
                slot = out.setdefault(
                    (trade["account"], unit), {"settled": Decimal(0), "pending": Decimal(0)}
                )
                slot[phase] += amount
    return out


async def post(gateway: httpx.AsyncClient, key: str, trade: dict[str, Any]) -> str:
    response = await gateway.post("/v1/trades", json=trade, headers=auth(key))
    assert response.status_code == 201, response.text
    return str(response.json()["trade_id"])


async def journal_kinds(ledger: httpx.AsyncClient, trade_id: str) -> list[str]:
    response = await ledger.get("/v1/journal", params={"trade_id": trade_id})
    assert response.status_code == 200, response.text
    return [entry["kind"] for entry in response.json()]


async def test_after_mixed_trades_the_trial_balance_is_zero_and_positions_match_the_trades(
    gateway: httpx.AsyncClient,
    ledger: httpx.AsyncClient,
    desk: tuple[list[str], str],
) -> None:
    accounts, trader = desk
    plain = mixed_trades(accounts, 18)
    held = [a_trade(account=accounts[0], **HELD), a_trade(account=accounts[1], **HELD)]
    ids = await asyncio.gather(*(post(gateway, trader, t) for t in plain))
    held_ids = [await post(gateway, trader, t) for t in held]
    for trade_id in held_ids:
        await eventually(
            lambda t=trade_id: journal_kinds(ledger, t), "held trade booked pending", 60
        )
    # One held trade is amended (still held), the other cancelled.
    amended = {**held[0], "quantity": "1100000", "price": "19.5"}
    response = await gateway.post(
        f"/v1/trades/{held_ids[0]}/amend",
        json={"reason": "test", "quantity": "1100000", "price": "19.5"},
        headers=auth(trader),
    )
    assert response.status_code == 200, response.text
    response = await gateway.post(
        f"/v1/trades/{held_ids[1]}/cancel", json={"reason": "test"}, headers=auth(trader)
    )
    assert response.status_code == 200, response.text

    async def settled_all() -> bool:
        kinds = await asyncio.gather(*(journal_kinds(ledger, t) for t in ids))
        return all("settled" in k for k in kinds)

    await eventually(settled_all, "every plain trade settled in the ledger", 180)
    await eventually(
        lambda: _kinds_are(ledger, held_ids[0], ["pending", "reversal", "pending"]),
        "the amendment rebooked",
        60,
    )
    await eventually(
        lambda: _kinds_are(ledger, held_ids[1], ["pending", "reversal"]),
        "the cancellation voided",
        60,
    )

    want = expected_positions(plain, [amended])
    for account in accounts:
        body = (await ledger.get(f"/v1/accounts/{account}/balances")).json()
        got = {
            (account, a["unit"]): {
                "settled": Decimal(a["settled"]),
                "pending": Decimal(a["pending"]),
            }
            for a in body["assets"]
            if Decimal(a["settled"]) or Decimal(a["pending"])
        }
        assert got == {k: v for k, v in want.items() if k[0] == account}, account
        for asset in body["assets"]:
            assert Decimal(asset["position"]) == Decimal(asset["settled"]) + Decimal(
                asset["pending"]
            )
    trial = (await ledger.get("/v1/trial-balance")).json()
    assert trial["balanced"] is True and trial["non_zero_units"] == [], trial
    assert all(Decimal(total) == 0 for total in trial["totals_by_unit"].values())


async def test_settled_positions_are_located_at_the_depository_and_the_custodian(
    gateway: httpx.AsyncClient,
    ledger: httpx.AsyncClient,
    desk: tuple[list[str], str],
) -> None:
    """The stock record balances: for every ISIN, the clients' settled positions are
    matched by the location accounts (credit normal: what the firm holds there) and no
    settled balance is left on the street, which keeps only open contracts."""
    accounts, trader = desk
    isin, lei = "US0378331005", LEIS[0]  # the demo SSI: DTC, IRVTUS3NXXX, SAFE-US-A-001
    depository = "depository:DTCYUS33XXX:securities"
    custodian = "custodian:IRVTUS3NXXX/SAFE-US-A-001:cash"
    buy = a_trade(account=accounts[2], isin=isin, counterparty_lei=lei, quantity="7")
    sell = a_trade(account=accounts[2], isin=isin, counterparty_lei=lei, quantity="3",
                   side="SELL", settlement_type="FOP")  # fmt: skip
    ids = [await post(gateway, trader, t) for t in (buy, sell)]
    for trade_id in ids:
        await eventually(
            lambda t=trade_id: _settled(ledger, t), "the trade settled in the ledger", 120
        )

    journal = (await ledger.get("/v1/journal", params={"trade_id": ids[0]})).json()
    [settled] = [e for e in journal if e["kind"] == "settled"]
    lines = {(li["ledger_account"], li["unit"]) for li in settled["lines"]}
    assert {(depository, isin), (custodian, "USD")} <= lines
    assert not any(a.startswith("street:") and not a.endswith("_pending") for a, _ in lines)

    # One snapshot of every non-zero account: owner side and location side per ISIN.
    rows = (await ledger.get("/v1/trial-balance", params={"accounts": "true"})).json()["rows"]
    balances = {(r["ledger_account"], r["unit"]): Decimal(r["balance"]) for r in rows}
    assert not [k for k in balances if k[0].startswith("street:") and "_pending" not in k[0]]
    isins = {u for a, u in balances if a.endswith(":securities")}
    for unit in isins:
        owned = sum(
            b
            for (a, u), b in balances.items()
            if u == unit and a.startswith("client:") and a.endswith(":securities")
        )
        located = sum(
            b
            for (a, u), b in balances.items()
            if u == unit and a.startswith(("depository:", "custodian:"))
        )
        assert owned == -located, unit

    chart = {
        (c["ledger_account"], c["unit"]): (c["account_type"], c["normal_side"], c["owner"])
        for kind in ("depository", "custodian")
        for c in (await ledger.get("/v1/chart", params={"account_type": kind})).json()
    }
    assert chart[(depository, isin)] == ("depository", "credit", "DTCYUS33XXX")
    assert chart[(custodian, "USD")] == ("custodian", "credit", "IRVTUS3NXXX/SAFE-US-A-001")


async def _settled(ledger: httpx.AsyncClient, trade_id: str) -> bool:
    return "settled" in await journal_kinds(ledger, trade_id)


async def _kinds_are(ledger: httpx.AsyncClient, trade_id: str, kinds: list[str]) -> bool:
    return await journal_kinds(ledger, trade_id) == kinds


async def test_as_of_balances_and_a_statement_of_the_period(
    gateway: httpx.AsyncClient,
    ledger: httpx.AsyncClient,
    desk: tuple[list[str], str],
) -> None:
    """A trade captured late (traded an hour ago, posted now) belongs to the past it was
    traded in: the balance as of before its trade time does not show it, as of after does;
    the statement lists its lines with running balances from the opening balance."""
    accounts, trader = desk
    account = accounts[2]
    traded_at = datetime.now(UTC) - timedelta(hours=1)
    if traded_at.date() != datetime.now(UTC).date():
        pytest.skip("an hour ago is yesterday: trade_date would not be today")
    before = (
        await ledger.get(
            f"/v1/accounts/{account}/balances",
            params={"as_of": (traded_at - timedelta(minutes=1)).isoformat()},
        )
    ).json()
    trade = a_trade(
        account=account, trade_time=traded_at.isoformat().replace("+00:00", "Z"), **HELD
    )
    trade_id = await post(gateway, trader, trade)
    await eventually(lambda: _kinds_are(ledger, trade_id, ["pending"]), "booked pending", 60)

    def position(body: dict[str, Any], unit: str) -> Decimal:
        return sum((Decimal(a["pending"]) for a in body["assets"] if a["unit"] == unit), Decimal(0))

    still_before = (
        await ledger.get(
            f"/v1/accounts/{account}/balances",
            params={"as_of": (traded_at - timedelta(minutes=1)).isoformat()},
        )
    ).json()
    after = (
        await ledger.get(
            f"/v1/accounts/{account}/balances",
            params={"as_of": (traded_at + timedelta(minutes=1)).isoformat()},
        )
    ).json()
    isin = trade["isin"]
    assert position(still_before, isin) == position(before, isin)
    assert position(after, isin) == position(before, isin) + Decimal(HELD["quantity"])

    statement = await ledger.get(
        f"/v1/accounts/{account}/statement",
        params={
            "from": (traded_at - timedelta(minutes=1)).isoformat(),
            "to": (traded_at + timedelta(minutes=1)).isoformat(),
            "unit": isin,
        },
    )
    assert statement.status_code == 200, statement.text
    body = statement.json()
    [line] = [x for x in body["lines"] if x["trade_id"] == trade_id]
    opening = {x["ledger_account"]: Decimal(x["balance"]) for x in body["opening"]}
    account_name = f"client:{account}:securities_pending"
    assert Decimal(line["balance"]) == opening.get(account_name, Decimal(0)) + Decimal(
        HELD["quantity"]
    )
    # Recorded now, an hour after it took effect.
    posted_at = datetime.fromisoformat(line["posted_at"])
    assert posted_at - datetime.fromisoformat(line["effective_at"]) > timedelta(minutes=50)


async def test_a_posting_below_a_limit_is_refused_into_an_exception_ops_and_compliance_see(
    stack: Stack,
    gateway: httpx.AsyncClient,
    keys: dict[str, str],
    databases: dict[str, AsyncEngine],
    ledger: httpx.AsyncClient,
    desk: tuple[list[str], str],
) -> None:
    accounts, trader = desk
    account = accounts[1]
    ops = auth(keys["ops"])
    # A sale of a security the account has never held, with no short sales allowed.
    isin = "DE0007164600"
    response = await ledger.put(
        f"/v1/accounts/{account}/limits/{isin}", json={"min_position": "0"}, headers=ops
    )
    assert response.status_code == 200, response.text
    assert response.json()["set_by"].startswith("key:")
    trade_id = await post(
        gateway,
        trader,
        a_trade(account=account, side="SELL", isin=isin, currency="EUR", venue="XETR",
                quantity="7", price="50"),
    )  # fmt: skip

    async def refused() -> list[dict[str, Any]]:
        answer = await ledger.get("/v1/exceptions", params={"trade_id": trade_id})
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    [exception] = await eventually(refused, "the posting refused into an exception", 60)
    assert exception["breaches"][0]["unit"] == isin
    assert Decimal(exception["breaches"][0]["position_after"]) == Decimal(-7)
    assert await journal_kinds(ledger, trade_id) == []
    for role in ("ops", "compliance"):
        seen = await ledger.get(
            "/v1/exceptions", params={"trade_id": trade_id}, headers=auth(keys[role])
        )
        assert seen.status_code == 200 and len(seen.json()) == 1
    async with databases["ledger"].connect() as connection:
        count = await connection.scalar(
            sa.text(
                "SELECT count(*) FROM outbox WHERE event_type = 'ledger.posting_refused' "
                "AND convert_from(payload, 'UTF8')::jsonb ->> 'subject' = :t"
            ),
            {"t": trade_id},
        )
    assert count == 1
    removed = await ledger.delete(f"/v1/accounts/{account}/limits/{isin}", headers=ops)
    assert removed.status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/accounts/ACC-001/balances", None),
        (
            "GET",
            "/v1/accounts/ACC-001/statement?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
            None,
        ),
        ("GET", "/v1/trial-balance", None),
        ("GET", "/v1/journal?trade_id=x", None),
        ("GET", "/v1/chart", None),
        ("GET", "/v1/exceptions", None),
        ("GET", "/v1/accounts/ACC-001/limits", None),
        ("PUT", "/v1/accounts/ACC-001/limits/USD", {"min_position": "0"}),
        ("DELETE", "/v1/accounts/ACC-001/limits/USD", None),
    ],
)
async def test_every_ledger_route_needs_a_key_and_the_role(
    stack: Stack, keys: dict[str, str], method: str, path: str, body: dict[str, str] | None
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ledger"), timeout=10) as client:
        no_key = await client.request(method, path, json=body)
        assert no_key.status_code == 401
        assert no_key.headers["content-type"].startswith("application/problem+json")
        trader = await client.request(method, path, json=body, headers=auth(keys["trader"]))
        assert trader.status_code == 403, trader.text
        if method in ("PUT", "DELETE"):  # limits: operations only
            compliance = await client.request(
                method, path, json=body, headers=auth(keys["compliance"])
            )
            assert compliance.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/v1/accounts/ACC-001/balances?as_of=2026-01-01T00:00:00", None, "as_of"),
        ("GET", "/v1/accounts/ACC-001/balances?as_of=yesterday", None, "as_of"),
        ("GET", "/v1/accounts/ACC-001/statement?to=2026-01-02T00:00:00Z", None, "from"),
        (
            "GET",
            "/v1/accounts/ACC-001/statement?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            None,
            "to",
        ),
        ("GET", "/v1/journal", None, "trade_id"),
        ("GET", "/v1/accounts/bad%20account/balances", None, "account"),
        ("PUT", "/v1/accounts/ACC-001/limits/XXXX", {"min_position": "0"}, "unit"),
        ("PUT", "/v1/accounts/ACC-001/limits/US0378331006", {"min_position": "0"}, "unit"),
        ("PUT", "/v1/accounts/ACC-001/limits/USD", {"min_position": "lots"}, "min_position"),
        ("PUT", "/v1/accounts/ACC-001/limits/USD", {"min_position": "NaN"}, "min_position"),
        ("PUT", "/v1/accounts/ACC-001/limits/USD", {"min_position": "0", "x": 1}, "x"),
        ("PUT", "/v1/accounts/ACC-001/limits/USD", {}, "min_position"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    stack: Stack,
    keys: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ledger"), timeout=10) as client:
        response = await client.request(method, path, json=body, headers=auth(keys["ops"]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in {e["field"].split(".")[-1] for e in response.json()["errors"]}, response.text


async def test_an_account_the_ledger_never_saw_is_a_404(stack: Stack, keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ledger"), timeout=10) as client:
        response = await client.get(
            f"/v1/accounts/NEVER-{uuid.uuid4().hex[:6]}/balances", headers=auth(keys["ops"])
        )
        removed = await client.delete("/v1/accounts/NEVER/limits/USD", headers=auth(keys["ops"]))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert removed.status_code == 404
