from pydantic_settings import SettingsConfigDict

from bo_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CSD_SIMULATOR_", extra="ignore")

    service_name: str = "csd_simulator"
    port: int = 8005
    # A JSON file of behaviour rules loaded at start (see docs/csd-simulator.md).
    rules_file: str | None = None
