"""Composition root of settlement."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from bo_common.runtime import ServiceRuntime, build_app
from settlement import calendars, handlers
from settlement.api import router
from settlement.config import Settings
from settlement.consumers import subscription
from settlement.markets import MARKETS
from settlement.runs import netting_cycle


class SettlementRuntime(ServiceRuntime):
    """The runtime, with an event the netting cycle waits on so that it stops at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = asyncio.Event()

    async def stop(self) -> None:
        self.stopping.set()
        await super().stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Netting disabled: instruct each obligation gross as soon as it is ready.
    handlers.GROSS_WHEN_READY = settings.netting_interval_s <= 0
    calendars.load_all(sorted({market.calendar for market in MARKETS.values()}))
    runtime = SettlementRuntime(settings, subscription, background=[netting_cycle])
    return build_app(
        runtime,
        title="Back office settlement",
        description="Obligations, SSIs, netting runs, instructions to the depository and "
        "their outcome.",
        routers=[router],
    )
