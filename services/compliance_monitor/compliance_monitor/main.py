"""Composition root of compliance_monitor."""

from fastapi import FastAPI

from bo_common.runtime import ServiceRuntime, build_app
from compliance_monitor.api import router
from compliance_monitor.config import Settings
from compliance_monitor.consumers import subscription


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = ServiceRuntime(settings or Settings(), subscription)
    return build_app(
        runtime,
        title="Back office compliance monitor",
        description="Pre-settlement rules, the restricted list, alerts and holds.",
        routers=[router],
    )
