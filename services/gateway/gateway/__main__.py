from bo_common.runtime import serve
from gateway.config import Settings
from gateway.main import create_app

settings = Settings()
serve(create_app(settings), settings)
