#!/usr/bin/env bash
# deploy/local/postgres.sh {start|stop|status|url|install}
#
# A real PostgreSQL server for local development and tests, with role and database
# `leadstream` (password `leadstream`, LOGIN CREATEDB: tests create their own databases).
#
#   start    make sure the server runs and the role/database exist. Idempotent.
#   stop     stop the server only if this checkout's `start` started it (marker in .run/postgres).
#   status   print running/stopped; exit 0 when it answers, 3 when not.
#   url      print the SQLAlchemy/asyncpg URL (postgresql+asyncpg://...).
#   install  (root, Debian/Ubuntu) apt-get install postgresql if the server is missing.
#
# Three ways, chosen automatically:
#   1. DATABASE_URL is set: an external server. Nothing is started or stopped; `url` prints it,
#      `status` checks that it answers (pg_isready).
#   2. root on Debian/Ubuntu: Debian's postgresql (installed with apt-get if missing), in a
#      DEDICATED cluster `leadstream` (pg_createcluster <ver> leadstream -p <port>), not the
#      machine's `main` cluster. The cluster is machine-wide: another checkout may reuse it.
#   3. otherwise (non-root, macOS, other Linux), or with PG_MODE=initdb: initdb/pg_ctl from PATH
#      (or /usr/lib/postgresql/<ver>/bin) with a data directory in <run dir>/postgres/data, private
#      to this checkout (or to LEADSTREAM_RUN_DIR). As root the server runs as the `postgres` user.
#
# Environment (defaults):
#   DATABASE_URL                 use this server instead of a local one
#   PG_MODE=auto                 auto (as above) or initdb (way 3 even as root: a second server with
#                                its own data directory and port, e.g. for tests that kill it)
#   LEADSTREAM_RUN_DIR=<repo>/.run   where way 3 keeps its data, log and socket
#   PGPORT_LEADSTREAM=55432      port of the local server (127.0.0.1)
#   PG_VERSION                   Debian: major version to use (default: existing leadstream
#                                cluster's, else the newest in /usr/lib/postgresql)
#   PG_START_TIMEOUT=60          seconds to wait for the server to answer
#
# The local server is tuned for tests: fsync=off and full_page_writes=off (a crashed or
# killed server loses nothing, a crashed machine may), ssl=off (loopback only),
# max_connections=400, locale C, UTF8.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

LS_PROG="postgres.sh"
# shellcheck source=SCRIPTDIR/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

PGPORT_LEADSTREAM="${PGPORT_LEADSTREAM:-55432}"
PG_MODE="${PG_MODE:-auto}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"
CLUSTER="leadstream"
DB_USER="leadstream"
DB_PASSWORD="leadstream"
DB_NAME="leadstream"

STATE="${LS_RUN_DIR}/postgres"
MARKER="${STATE}/started-by-us"
DATA="${STATE}/data"
LOGFILE="${STATE}/postgres.log"
PORT_FILE="${STATE}/port"

test_settings() {
  cat <<'EOF'
# managed by deploy/local/postgres.sh: settings for a local test server
listen_addresses = '127.0.0.1'
# `make test` runs three workers, each with fleets of eight services (pools, LISTEN and key-store connections).
max_connections = 400
fsync = off
full_page_writes = off
# Loopback only: TLS would cost both ends CPU for nothing (Debian's default config turns it on).
# A production DATABASE_URL chooses TLS itself (?ssl=require).
ssl = off
EOF
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

url_for_port() {
  printf 'postgresql+asyncpg://%s:%s@127.0.0.1:%s/%s\n' "${DB_USER}" "${DB_PASSWORD}" "$1" "${DB_NAME}"
}

# DATABASE_URL as libpq understands it: drop a "+driver" from the scheme.
libpq_url() {
  local url="$1"
  printf '%s\n' "${url}" | sed -E 's#^postgres(ql)?\+[A-Za-z0-9_]+://#postgresql://#'
}

mode() {
  [[ "${PG_MODE}" == auto || "${PG_MODE}" == initdb ]] || die "PG_MODE=${PG_MODE}: expected auto or initdb"
  if [[ -n "${DATABASE_URL:-}" ]]; then
    echo external
  elif [[ "${PG_MODE}" == initdb ]]; then
    echo initdb
  elif [[ "$(id -u)" == 0 ]] && { command -v pg_ctlcluster >/dev/null 2>&1 || command -v apt-get >/dev/null 2>&1; }; then
    echo debian
  else
    echo initdb
  fi
}

# Path of a PostgreSQL client program: next to PG_BIN's server programs, else on PATH, else
# in the newest /usr/lib/postgresql/<ver>/bin.
pg_tool() {
  local name="$1" d
  if [[ -n "${PG_BIN:-}" && -x "${PG_BIN}/${name}" ]]; then
    echo "${PG_BIN}/${name}"
  elif command -v "${name}" >/dev/null 2>&1; then
    command -v "${name}"
  else
    for d in $(debian_installed_versions | sort -rn); do
      if [[ -x "/usr/lib/postgresql/${d}/bin/${name}" ]]; then
        echo "/usr/lib/postgresql/${d}/bin/${name}"
        return 0
      fi
    done
    return 1
  fi
}

wait_ready() {
  local port="$1" deadline=$((SECONDS + PG_START_TIMEOUT)) isready
  isready="$(pg_tool pg_isready || true)"
  while :; do
    if [[ -n "${isready}" ]]; then
      "${isready}" -q -h 127.0.0.1 -p "${port}" -t 2 >/dev/null 2>&1 && return 0
    else
      port_in_use "${port}" && return 0
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# ------------------------------------------------------------------ Debian (root) mode

debian_installed_versions() {
  local d
  for d in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x "${d}" ]] || continue
    d="${d#/usr/lib/postgresql/}"
    printf '%s\n' "${d%%/*}"
  done | sort -n
}

debian_install() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 &&
    [[ -n "$(debian_installed_versions)" ]]; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is not available"
  log "installing PostgreSQL with apt-get (apt-get update first) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  apt-get install -y -q postgresql >&2 9>&- 8>&- || die "apt-get install postgresql failed"
  [[ -n "$(debian_installed_versions)" ]] || die "postgresql installed but no server in /usr/lib/postgresql"
}

# "<version> <port> <status> <datadir>" of our cluster, if it exists
debian_cluster_line() {
  pg_lsclusters -h 2>/dev/null | awk -v c="${CLUSTER}" '$2 == c { print $1, $3, $4, $6 }' |
    { if [[ -n "${PG_VERSION:-}" ]]; then awk -v v="${PG_VERSION}" '$1 == v'; else cat; fi; } |
    sort -n | tail -n 1
}

debian_version() {
  local line
  line="$(debian_cluster_line)"
  if [[ -n "${line}" ]]; then
    echo "${line%% *}"
  elif [[ -n "${PG_VERSION:-}" ]]; then
    echo "${PG_VERSION}"
  else
    debian_installed_versions | tail -n 1
  fi
}

postmaster_pid() {
  local datadir="$1" pid=""
  if [[ -f "${datadir}/postmaster.pid" ]]; then
    read -r pid <"${datadir}/postmaster.pid" || true
  fi
  if [[ "${pid}" =~ ^[0-9]+$ ]] && pid_alive "${pid}"; then
    echo "${pid}"
  fi
}

as_postgres() {
  (cd / && runuser -u postgres -- "$@")
}

debian_psql() {
  local port="$1"
  shift
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "${port}" -d postgres "$@"
}

# CREATEDB: every test session makes its own database. CREATEROLE: tests prove the services run as a role with
# data-only (DML) grants, the way the chart runs them (docs/operations.md).
ensure_role_and_db() {
  # $1..: a psql command line connected as a superuser to database postgres
  local exists
  "$@" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${DB_USER}') THEN
        CREATE ROLE ${DB_USER} LOGIN CREATEDB CREATEROLE PASSWORD '${DB_PASSWORD}';
      ELSE
        ALTER ROLE ${DB_USER} LOGIN CREATEDB CREATEROLE PASSWORD '${DB_PASSWORD}';
      END IF;
    END \$\$;" >&2 || die "could not create role ${DB_USER}"
  exists="$("$@" -tA -c "SELECT 1 FROM pg_database WHERE datname = '${DB_NAME}'")" ||
    die "could not query databases"
  if [[ "${exists}" != 1 ]]; then
    log "creating database ${DB_NAME} owned by ${DB_USER}"
    "$@" -c "CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}" >&2 || die "could not create database ${DB_NAME}"
  fi
}

debian_start() {
  debian_install
  command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is needed to run psql as postgres"
  local ver line port status datadir conf
  ver="$(debian_version)"
  [[ -n "${ver}" ]] || die "no PostgreSQL server version found in /usr/lib/postgresql"
  line="$(debian_cluster_line)"
  if [[ -z "${line}" ]]; then
    if port_in_use "${PGPORT_LEADSTREAM}"; then
      die "port 127.0.0.1:${PGPORT_LEADSTREAM} is already in use by another process; choose another with PGPORT_LEADSTREAM"
    fi
    log "creating dedicated cluster ${ver}/${CLUSTER} on port ${PGPORT_LEADSTREAM}"
    pg_createcluster -q "${ver}" "${CLUSTER}" -p "${PGPORT_LEADSTREAM}" --start-conf=manual \
      --locale=C -e UTF8 -- --auth-local=peer --auth-host=scram-sha-256 >&2 ||
      die "pg_createcluster ${ver} ${CLUSTER} failed"
    line="$(debian_cluster_line)"
  fi
  read -r ver port status datadir <<<"${line}"

  if [[ "${status}" == online* ]]; then
    if [[ "${port}" != "${PGPORT_LEADSTREAM}" ]]; then
      log "warning: cluster ${ver}/${CLUSTER} runs on port ${port}, not PGPORT_LEADSTREAM=${PGPORT_LEADSTREAM} (stop it to change)"
    fi
    log "cluster ${ver}/${CLUSTER} already running on port ${port}"
  else
    if [[ "${port}" != "${PGPORT_LEADSTREAM}" ]]; then
      log "moving cluster ${ver}/${CLUSTER} from port ${port} to ${PGPORT_LEADSTREAM}"
      pg_conftool "${ver}" "${CLUSTER}" set port "${PGPORT_LEADSTREAM}" >&2
      port="${PGPORT_LEADSTREAM}"
    fi
    if port_in_use "${port}"; then
      die "port 127.0.0.1:${port} is already in use by another process; choose another with PGPORT_LEADSTREAM"
    fi
    # postgresql.conf of Debian clusters reads conf.d/ (include_dir)
    conf="/etc/postgresql/${ver}/${CLUSTER}/conf.d/50-leadstream-local.conf"
    mkdir -p "${conf%/*}"
    test_settings >"${conf}"
    chmod 644 "${conf}"
    log "starting cluster ${ver}/${CLUSTER} on 127.0.0.1:${port}"
    pg_ctlcluster "${ver}" "${CLUSTER}" start >&2 9>&- 8>&- ||
      die "pg_ctlcluster ${ver} ${CLUSTER} start failed; see /var/log/postgresql/postgresql-${ver}-${CLUSTER}.log"
    printf 'mode=debian\nversion=%s\ncluster=%s\nport=%s\npid=%s\n' "${ver}" "${CLUSTER}" "${port}" \
      "$(postmaster_pid "${datadir}")" >"${MARKER}"
  fi
  wait_ready "${port}" || die "cluster ${ver}/${CLUSTER} does not answer on 127.0.0.1:${port} after ${PG_START_TIMEOUT}s"
  printf '%s\n' "${port}" >"${PORT_FILE}"
  ensure_role_and_db debian_psql "${port}"
}

debian_stop() {
  if [[ ! -f "${MARKER}" ]]; then
    log "not stopping: this checkout did not start the ${CLUSTER} cluster"
    return 0
  fi
  local ver pid line port status datadir now
  ver="$(sed -n 's/^version=//p' "${MARKER}")"
  pid="$(sed -n 's/^pid=//p' "${MARKER}")"
  line="$(PG_VERSION="${ver}" debian_cluster_line)"
  if [[ -z "${line}" ]]; then
    log "cluster ${ver}/${CLUSTER} no longer exists"
    rm -f "${MARKER}"
    return 0
  fi
  read -r ver port status datadir <<<"${line}"
  now="$(postmaster_pid "${datadir}")"
  if [[ -z "${now}" ]]; then
    log "cluster ${ver}/${CLUSTER} is not running"
  elif [[ -n "${pid}" && "${now}" != "${pid}" ]]; then
    log "not stopping: cluster ${ver}/${CLUSTER} was restarted by someone else (pid ${now}, we started ${pid})"
  else
    log "stopping cluster ${ver}/${CLUSTER} (pid ${now}, port ${port})"
    pg_ctlcluster -m fast "${ver}" "${CLUSTER}" stop >&2 || die "pg_ctlcluster ${ver} ${CLUSTER} stop failed"
    log "stopped"
  fi
  rm -f "${MARKER}"
}

debian_port() {
  local line
  line="$(debian_cluster_line)"
  if [[ -n "${line}" ]]; then
    read -r _ port _ <<<"${line}"
    echo "${port}"
  else
    echo "${PGPORT_LEADSTREAM}"
  fi
}

# ------------------------------------------------------------------ initdb mode

# Run a server program as the data directory's owner: this user, or `postgres` when root (initdb and
# the server refuse to run as root).
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

owner_uid() {
  if [[ "$(id -u)" == 0 ]]; then id -u postgres; else id -u; fi
}

# As root: hand the state folder to `postgres`, which must be able to reach it.
prepare_owner() {
  [[ "$(id -u)" == 0 ]] || return 0
  id -u postgres >/dev/null 2>&1 ||
    die "PG_MODE=initdb as root runs the server as the postgres user, which does not exist (apt-get install postgresql)"
  command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is needed to run the server as postgres"
  chown -R postgres: "${STATE}"
  as_owner test -w "${STATE}" ||
    die "the postgres user cannot write ${STATE}: every folder above it must be searchable by others (chmod o+x)"
}

PG_BIN=""
find_pg_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    PG_BIN="$(dirname "$(command -v pg_ctl)")"
    return 0
  fi
  local v
  v="$(debian_installed_versions | tail -n 1)"
  if [[ -n "${v}" && -x "/usr/lib/postgresql/${v}/bin/initdb" ]]; then
    PG_BIN="/usr/lib/postgresql/${v}/bin"
    return 0
  fi
  die "initdb/pg_ctl not found. Install PostgreSQL (macOS: brew install postgresql@16 and put \
\$(brew --prefix postgresql@16)/bin on PATH; Fedora: dnf install postgresql-server; Arch: pacman -S \
postgresql; Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL"
}

socket_dir() {
  # Unix socket paths are limited to ~100 bytes: fall back to a short folder.
  local dir="${STATE}/sock"
  if ((${#dir} > 80)); then
    dir="${TMPDIR:-/tmp}"
    dir="${dir%/}/leadstream-pg-$(owner_uid)"
  fi
  mkdir -p "${dir}"
  chmod 700 "${dir}"
  if [[ "$(id -u)" == 0 ]]; then chown postgres: "${dir}"; fi
  echo "${dir}"
}

initdb_running_port() {
  # port of the server running on our data dir, if any
  local pid
  pid="$(postmaster_pid "${DATA}")"
  [[ -n "${pid}" ]] || return 0
  sed -n '4p' "${DATA}/postmaster.pid"
}

initdb_start() {
  find_pg_bin
  prepare_owner
  local port running
  running="$(initdb_running_port)"
  if [[ -n "${running}" ]]; then
    log "server on ${DATA} already running on port ${running}"
    port="${running}"
  else
    port="${PGPORT_LEADSTREAM}"
    if port_in_use "${port}"; then
      die "port 127.0.0.1:${port} is already in use by another process; choose another with PGPORT_LEADSTREAM"
    fi
    if [[ ! -f "${DATA}/PG_VERSION" ]]; then
      log "initdb ${DATA}"
      rm -rf "${DATA}"
      as_owner "${PG_BIN}/initdb" -D "${DATA}" -U postgres --auth=trust --no-locale -E UTF8 >&2 ||
        die "initdb failed"
      test_settings >>"${DATA}/postgresql.conf"
    fi
    log "starting PostgreSQL on 127.0.0.1:${port} (data ${DATA}, log ${LOGFILE})"
    as_owner "${PG_BIN}/pg_ctl" -D "${DATA}" -l "${LOGFILE}" -w -t "${PG_START_TIMEOUT}" \
      -o "-p ${port} -k $(socket_dir) -c listen_addresses=127.0.0.1" start >&2 9>&- 8>&- || {
      tail -n 30 "${LOGFILE}" >&2 || true
      die "pg_ctl start failed; see ${LOGFILE}"
    }
    printf 'mode=initdb\ndata=%s\nport=%s\npid=%s\n' "${DATA}" "${port}" "$(postmaster_pid "${DATA}")" >"${MARKER}"
  fi
  wait_ready "${port}" || die "PostgreSQL does not answer on 127.0.0.1:${port}"
  printf '%s\n' "${port}" >"${PORT_FILE}"
  local psql
  psql="$(pg_tool psql)" || die "psql not found (install the PostgreSQL client)"
  ensure_role_and_db "${psql}" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${port}" -U postgres -d postgres
}

initdb_stop() {
  if [[ ! -f "${MARKER}" ]]; then
    log "not stopping: this checkout did not start PostgreSQL"
    return 0
  fi
  if [[ -z "$(postmaster_pid "${DATA}")" ]]; then
    log "not running"
  else
    find_pg_bin
    log "stopping PostgreSQL (data ${DATA})"
    as_owner "${PG_BIN}/pg_ctl" -D "${DATA}" -m fast -w stop >&2 || die "pg_ctl stop failed"
    log "stopped"
  fi
  rm -f "${MARKER}"
}

# ------------------------------------------------------------------ commands

local_port() {
  case "$(mode)" in
    debian)
      if command -v pg_lsclusters >/dev/null 2>&1; then debian_port; else echo "${PGPORT_LEADSTREAM}"; fi
      ;;
    *)
      local p
      p="$(initdb_running_port)"
      echo "${p:-${PGPORT_LEADSTREAM}}"
      ;;
  esac
}

cmd_url() {
  if [[ -n "${DATABASE_URL:-}" ]]; then
    printf '%s\n' "${DATABASE_URL}"
  else
    url_for_port "$(local_port)"
  fi
}

cmd_start() {
  check_port_var PGPORT_LEADSTREAM "${PGPORT_LEADSTREAM}"
  local m
  m="$(mode)"
  if [[ "${m}" == external ]]; then
    log "DATABASE_URL is set: using that server, not starting one"
    return 0
  fi
  ensure_ignored_dir "${LS_RUN_DIR}" postgres
  take_lock 9 "${STATE}/.lock"
  if [[ "${m}" == debian ]]; then debian_start; else initdb_start; fi
  log "ready: $(cmd_url)"
}

cmd_stop() {
  # Driven by the marker only: stop exactly what this checkout's `start` started, even if
  # DATABASE_URL now points at it.
  if [[ ! -f "${MARKER}" ]]; then
    if [[ -n "${DATABASE_URL:-}" ]]; then
      log "DATABASE_URL is set and this checkout started no server: nothing to stop"
    else
      log "not stopping: this checkout did not start PostgreSQL"
    fi
    return 0
  fi
  take_lock 9 "${STATE}/.lock"
  case "$(sed -n 's/^mode=//p' "${MARKER}")" in
    initdb) initdb_stop ;;
    debian) debian_stop ;;
    *)
      log "unreadable marker ${MARKER}: removing it, stopping nothing"
      rm -f "${MARKER}"
      ;;
  esac
}

cmd_status() {
  local m port url who=""
  m="$(mode)"
  if [[ "${m}" == external ]]; then
    if ! command -v pg_isready >/dev/null 2>&1; then
      echo "postgres: external DATABASE_URL (pg_isready not installed, not checked)"
      return 0
    fi
    url="$(libpq_url "${DATABASE_URL}")"
    if pg_isready -q -d "${url}" -t 3 >/dev/null 2>&1; then
      echo "postgres: external DATABASE_URL answers"
      return 0
    fi
    echo "postgres: external DATABASE_URL does not answer"
    return 3
  fi
  port="$(local_port)"
  [[ -f "${MARKER}" ]] && who=", started by this checkout"
  if port_in_use "${port}" &&
    { ! command -v pg_isready >/dev/null 2>&1 || pg_isready -q -h 127.0.0.1 -p "${port}" -t 3 >/dev/null 2>&1; }; then
    if [[ "${m}" == debian ]]; then
      echo "postgres: running (cluster $(debian_version)/${CLUSTER}, 127.0.0.1:${port}${who})"
    else
      echo "postgres: running (data ${DATA}, pid $(postmaster_pid "${DATA}"), 127.0.0.1:${port}${who})"
    fi
    return 0
  fi
  echo "postgres: stopped (port ${port})"
  return 3
}

main() {
  local action="${1:-}"
  case "${action}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    install)
      if [[ "$(mode)" == debian ]]; then
        debian_install
      else
        log "install: only for root on Debian/Ubuntu; nothing to do here"
      fi
      ;;
    *) usage ;;
  esac
}

main "$@"
