"""Composition root of settlement."""

from fastapi import FastAPI

from bo_common.runtime import ServiceRuntime, build_app
from settlement.api import router
from settlement.config import Settings
from settlement.consumers import subscription


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = ServiceRuntime(settings or Settings(), subscription)
    return build_app(
        runtime,
        title="Back office settlement",
        description="Obligations, SSIs, instructions to the depository and their outcome.",
        routers=[router],
    )
