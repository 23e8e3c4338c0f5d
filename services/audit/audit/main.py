"""Composition root of audit."""

from fastapi import FastAPI

from audit.api import router
from audit.config import Settings
from audit.consumers import subscription
from bo_common.runtime import ServiceRuntime, build_app


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = ServiceRuntime(settings or Settings(), subscription)
    return build_app(
        runtime,
        title="Back office audit",
        description="The append-only, hash-chained record of every event.",
        routers=[router],
    )
