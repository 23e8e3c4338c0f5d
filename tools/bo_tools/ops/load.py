"""A load of trades through the gateway's batch route, for the fault suite and smoke checks:
retried like a front office retries (same client_trade_id), so a fault while loading never
loses or doubles a trade."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from bo_tools.demo import sample_trade


def trades_for(prefix: str, count: int, **overrides: str) -> list[dict[str, str]]:
    """Trades spread over the demo desk's accounts, both sides, distinct quantities."""
    return [
        sample_trade(
            client_trade_id=f"{prefix}-{n:05d}",
            account=f"ACC-{n % 10 + 1:03d}",
            side="BUY" if n % 3 else "SELL",
            quantity=str(n % 97 + 1),
            price="10.25",
            **overrides,
        )
        for n in range(count)
    ]


async def post_batches(
    base_url: str,
    trader_key: str,
    trades: list[dict[str, str]],
    *,
    batch_size: int = 500,
    concurrency: int = 2,
    give_up_after_s: float = 300,
) -> list[str]:
    """Post every trade; returns their trade ids in order. A batch that fails (the gateway
    restarting, its database away, 429, 503) is sent again until it is answered."""
    batches = [trades[i : i + batch_size] for i in range(0, len(trades), batch_size)]
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {trader_key}"}

    async def one(client: httpx.AsyncClient, batch: list[dict[str, str]]) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after_s
        async with semaphore:
            while True:
                try:
                    response = await client.post(
                        "/v1/trades/batch", json={"trades": batch}, headers=headers
                    )
                    if response.status_code == 200:
                        return _trade_ids(response.json(), batch)
                except httpx.HTTPError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"batch of {batch[0]['client_trade_id']} not accepted")
                await asyncio.sleep(0.5)

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        answered = await asyncio.gather(*(one(client, b) for b in batches))
    return [trade_id for batch in answered for trade_id in batch]


def _trade_ids(body: dict[str, Any], batch: list[dict[str, str]]) -> list[str]:
    items = sorted(body["items"], key=lambda r: r["index"])
    ids = []
    for item, trade in zip(items, batch, strict=True):
        if item["status"] not in ("created", "existing"):
            raise ValueError(f"{trade['client_trade_id']} was {item['status']}: {item}")
        ids.append(str(item["trade_id"]))
    return ids
