from services.runtime.identity import identity_metadata
from services.runtime.migrations import run_env

run_env(identity_metadata)
