from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bo_common.settings import ServiceSettings
from csd_simulator.domain import SettleOn


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CSD_SIMULATOR_", extra="ignore")

    service_name: str = "csd_simulator"
    port: int = 8005
    # A JSON file loaded at start: a list of behaviour rules, or the whole rules document
    # ({"rules": [...], "settle_on": ..., "as_of": ...}); see services/csd_simulator/README.md.
    rules_file: str | None = None
    # When a matched instruction settles: at once ("receipt", so a demo settles in seconds)
    # or on its intended settlement date ("intended_date", as a real depository does).
    # The rules document's settle_on overrides it at runtime.
    settle_on: SettleOn = "receipt"
    # How often instructions kept for their settlement date are looked at.
    settle_check_interval_s: float = Field(default=1.0, gt=0)
    # Where kept instructions are stored across restarts (None: var/csd_simulator/
    # pending-<broker>.json, one file per broker the simulator answers on).
    pending_file: str | None = None
