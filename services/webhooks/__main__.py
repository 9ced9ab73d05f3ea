from services.runtime.service import run_service
from services.webhooks.app import build

run_service(build)
