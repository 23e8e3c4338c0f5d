from bo_common.runtime import serve
from settlement.config import Settings
from settlement.main import create_app

settings = Settings()
serve(create_app(settings), settings)
