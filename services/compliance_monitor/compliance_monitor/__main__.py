from bo_common.runtime import serve
from compliance_monitor.config import Settings
from compliance_monitor.main import create_app

settings = Settings()
serve(create_app(settings), settings)
