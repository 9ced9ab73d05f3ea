from services.projection.app import build
from services.runtime.service import run_service

run_service(build)
