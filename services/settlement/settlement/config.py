from pydantic_settings import SettingsConfigDict

from bo_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_", extra="ignore")

    service_name: str = "settlement"
    port: int = 8001
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/bo_settlement"
    # Seconds between two netting cycles (each nets every settlement date with ready
    # obligations); 0 disables netting: an obligation is instructed gross once ready.
    netting_interval_s: float = 2.0
