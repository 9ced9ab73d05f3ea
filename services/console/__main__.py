from services.console.app import build
from services.runtime.service import run_service

run_service(build)
