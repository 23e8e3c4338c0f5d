"""Composition root of ledger."""

from fastapi import FastAPI

from bo_common.runtime import ServiceRuntime, build_app
from ledger.api import router
from ledger.config import Settings
from ledger.consumers import subscription


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = ServiceRuntime(settings or Settings(), subscription)
    return build_app(
        runtime,
        title="Back office ledger",
        description="The double-entry journal, balances and trial balance.",
        routers=[router],
    )
