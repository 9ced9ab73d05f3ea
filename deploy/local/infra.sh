#!/usr/bin/env bash
# deploy/local/infra.sh {up|down|status|env}
#
# The local infrastructure of leadstream in one command: a Kafka broker (kafka.sh) and a
# PostgreSQL server (postgres.sh).
#
#   up      kafka.sh fetch + start and postgres.sh start, then write <repo>/.run/env:
#             KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>
#             DATABASE_URL=postgresql+asyncpg://leadstream:leadstream@127.0.0.1:<port>/leadstream
#           A variable already set in the environment wins: with KAFKA_BOOTSTRAP_SERVERS set no
#           broker is started, with DATABASE_URL set no Postgres. Idempotent: a second `up`
#           finds both running and changes nothing.
#   down    stop what `up` started (Kafka by its PID, Postgres only if this checkout started
#           it); remove .run/env.
#   status  show both; exit 0 when both answer, 3 otherwise.
#   env     print `export ...` lines: eval "$(deploy/local/infra.sh env)"
#
# Environment: see kafka.sh and postgres.sh (KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_VERSION,
# PGPORT_LEADSTREAM, LEADSTREAM_CACHE_DIR, ...), plus KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

LS_PROG="infra.sh"
# shellcheck source=SCRIPTDIR/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

ENV_FILE="${LS_RUN_DIR}/env"
KAFKA_SH="${LS_LOCAL_DIR}/kafka.sh"
POSTGRES_SH="${LS_LOCAL_DIR}/postgres.sh"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# value of KEY in .run/env (empty if absent)
env_file_value() {
  [[ -f "${ENV_FILE}" ]] || return 0
  sed -n "s/^$1=//p" "${ENV_FILE}" | tail -n 1
}

kafka_bootstrap_local() {
  local f="${LS_RUN_DIR}/kafka/bootstrap"
  if [[ -s "${f}" ]]; then cat "${f}"; else echo "127.0.0.1:${KAFKA_PORT:-19092}"; fi
}

cmd_up() {
  local started="${SECONDS}" bootstrap url
  ensure_ignored_dir "${LS_RUN_DIR}"

  if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    log "KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS} is set: not starting a local broker"
    bootstrap="${KAFKA_BOOTSTRAP_SERVERS}"
  else
    "${KAFKA_SH}" fetch
    "${KAFKA_SH}" start
    bootstrap="$(kafka_bootstrap_local)"
  fi

  if [[ -n "${DATABASE_URL:-}" ]]; then
    log "DATABASE_URL is set: not starting a local PostgreSQL"
    url="${DATABASE_URL}"
  else
    "${POSTGRES_SH}" start
    url="$("${POSTGRES_SH}" url)"
  fi

  printf '# written by deploy/local/infra.sh up\nKAFKA_BOOTSTRAP_SERVERS=%s\nDATABASE_URL=%s\n' \
    "${bootstrap}" "${url}" >"${ENV_FILE}.tmp"
  mv "${ENV_FILE}.tmp" "${ENV_FILE}"
  log "up in $((SECONDS - started))s: KAFKA_BOOTSTRAP_SERVERS=${bootstrap} DATABASE_URL=${url} (also in ${ENV_FILE})"
}

cmd_down() {
  local rc=0
  "${KAFKA_SH}" stop || rc=$?
  "${POSTGRES_SH}" stop || rc=$?
  rm -f "${ENV_FILE}"
  return "${rc}"
}

cmd_status() {
  local rc=0
  if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    echo "kafka: external KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS}"
  else
    "${KAFKA_SH}" status || rc=3
  fi
  "${POSTGRES_SH}" status || rc=3
  if [[ -f "${ENV_FILE}" ]]; then
    echo "env (${ENV_FILE}):"
    grep -v '^#' "${ENV_FILE}" | sed 's/^/  /'
  else
    echo "env: ${ENV_FILE} not written (run: deploy/local/infra.sh up)"
  fi
  return "${rc}"
}

cmd_env() {
  local bootstrap="${KAFKA_BOOTSTRAP_SERVERS:-}" url="${DATABASE_URL:-}"
  [[ -n "${bootstrap}" ]] || bootstrap="$(env_file_value KAFKA_BOOTSTRAP_SERVERS)"
  [[ -n "${url}" ]] || url="$(env_file_value DATABASE_URL)"
  if [[ -z "${bootstrap}" || -z "${url}" ]]; then
    log "warning: ${ENV_FILE} missing (infra not up?); printing the local defaults"
    [[ -n "${bootstrap}" ]] || bootstrap="$(kafka_bootstrap_local)"
    [[ -n "${url}" ]] || url="$("${POSTGRES_SH}" url)"
  fi
  printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "${bootstrap}"
  printf 'export DATABASE_URL=%q\n' "${url}"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
