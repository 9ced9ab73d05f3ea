from services.runtime.service import run_service
from services.video.app import build

run_service(build)
