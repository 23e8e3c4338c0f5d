from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
