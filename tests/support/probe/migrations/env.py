from services.runtime.migrations import run_env
from tests.support.probe.store import metadata

run_env(metadata)
