from services.runtime.migrations import run_env
from services.video.store import metadata

run_env(metadata)
