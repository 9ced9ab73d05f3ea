from services.runtime.migrations import run_env
from services.webhooks.store import metadata

run_env(metadata)
