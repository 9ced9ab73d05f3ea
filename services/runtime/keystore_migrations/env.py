from services.runtime.migrations import run_env
from services.runtime.personal import keystore_metadata

run_env(keystore_metadata)
