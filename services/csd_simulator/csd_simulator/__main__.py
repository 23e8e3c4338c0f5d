from bo_common.runtime import serve
from csd_simulator.config import Settings
from csd_simulator.main import create_app

settings = Settings()
serve(create_app(settings), settings)
