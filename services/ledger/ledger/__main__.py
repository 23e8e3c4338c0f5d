from bo_common.runtime import serve
from ledger.config import Settings
from ledger.main import create_app

settings = Settings()
serve(create_app(settings), settings)
