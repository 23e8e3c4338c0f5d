"""Composition root of the gateway."""

from fastapi import FastAPI

from bo_common.runtime import ServiceRuntime, build_app
from gateway import repository
from gateway.api import router
from gateway.config import Settings
from gateway.consumers import subscription


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = ServiceRuntime(
        settings or Settings(), subscription, client_limits=repository.client_limit
    )
    return build_app(
        runtime,
        title="Back office gateway",
        description="Trade intake for front-office systems and the trade status view.",
        routers=[router],
    )
