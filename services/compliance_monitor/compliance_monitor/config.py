from pydantic_settings import SettingsConfigDict

from bo_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COMPLIANCE_MONITOR_", extra="ignore")

    service_name: str = "compliance_monitor"
    port: int = 8003
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/bo_compliance_monitor"
