from audit.config import Settings
from audit.main import create_app
from bo_common.runtime import serve

settings = Settings()
serve(create_app(settings), settings)
