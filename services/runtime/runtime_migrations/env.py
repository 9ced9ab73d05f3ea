from services.runtime.migrations import RUNTIME_VERSION_TABLE, run_env

# The runtime's tables in a service schema, versioned apart from the service's own migrations.
run_env(None, version_table=RUNTIME_VERSION_TABLE)
