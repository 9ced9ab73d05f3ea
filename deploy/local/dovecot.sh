#!/usr/bin/env bash
# deploy/local/dovecot.sh {install|start|stop|status|env}
#
# A real IMAP server (Dovecot) for the tests of outreach's reply inbox: its own configuration and
# state folder, its own port on 127.0.0.1, one test user, never the machine's own Dovecot.
#
#   install  (root, Debian/Ubuntu) apt-get install dovecot-imapd when dovecot is missing. The package's
#            own service is not needed (and not started here).
#   start    write the configuration into DOVECOT_STATE and start a Dovecot on DOVECOT_IMAP_PORT
#            (installs it first when missing and possible). Idempotent: one already running on that
#            state folder is kept. Prints nothing on stdout; `env` tells where it is.
#   stop     stop the Dovecot this state folder's `start` started, by its PID (SIGTERM, then KILL).
#   status   running/stopped; exit 0 when it answers, 3 when not.
#   env      print `export DOVECOT_IMAP_HOST=... DOVECOT_IMAP_PORT=... DOVECOT_USER=... DOVECOT_PASSWORD=...`.
#
# Environment (defaults):
#   DOVECOT_STATE=<repo>/.run/dovecot    configuration, mail, logs and the PID file (tests use one per session)
#   DOVECOT_IMAP_PORT=51143              IMAP port on 127.0.0.1 (plain text: loopback only)
#   DOVECOT_USER=replies@leadstream.test / DOVECOT_PASSWORD=leadstream   the test mailbox's login
#   DOVECOT_START_TIMEOUT=30             seconds to wait for the server to answer
#
# As root the mail processes run as `nobody` (Dovecot refuses mail access as root) and the login
# processes as Dovecot's own `dovenull`/`dovecot` users; otherwise everything runs as the current user.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

LS_PROG="dovecot.sh"
# shellcheck source=SCRIPTDIR/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

STATE="${DOVECOT_STATE:-${LS_RUN_DIR}/dovecot}"
PORT="${DOVECOT_IMAP_PORT:-51143}"
USER_NAME="${DOVECOT_USER:-replies@leadstream.test}"
PASSWORD="${DOVECOT_PASSWORD:-leadstream}"
START_TIMEOUT="${DOVECOT_START_TIMEOUT:-30}"
CONF="${STATE}/dovecot.conf"
PID_FILE="${STATE}/dovecot.pid"
LOG_FILE="${STATE}/dovecot.log"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

dovecot_bin() {
  if command -v dovecot >/dev/null 2>&1; then
    command -v dovecot
  elif [[ -x /usr/sbin/dovecot ]]; then
    echo /usr/sbin/dovecot
  fi
}

cmd_install() {
  [[ -n "$(dovecot_bin)" ]] && return 0
  [[ "$(id -u)" == 0 ]] || die "Dovecot is not installed and installing it needs root (apt-get install dovecot-imapd)"
  command -v apt-get >/dev/null 2>&1 || die "Dovecot is not installed and apt-get is not available"
  log "installing Dovecot with apt-get (apt-get update first) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  # A container has no init system: the package's own service is refused by policy-rc.d, which is fine.
  apt-get install -y -q --no-install-recommends dovecot-imapd >&2 9>&- 8>&- || die "apt-get install dovecot-imapd failed"
  [[ -n "$(dovecot_bin)" ]] || die "dovecot-imapd installed but no dovecot binary found"
}

# The user mail processes run as, and the users of Dovecot's unprivileged processes.
identities() {
  if [[ "$(id -u)" == 0 ]]; then
    MAIL_USER="nobody"
    MAIL_GROUP="$(id -gn nobody)"
    LOGIN_USER="dovenull"
    INTERNAL_USER="dovecot"
    id dovenull >/dev/null 2>&1 || LOGIN_USER="nobody"
    id dovecot >/dev/null 2>&1 || INTERNAL_USER="nobody"
  else
    MAIL_USER="$(id -un)"
    MAIL_GROUP="$(id -gn)"
    LOGIN_USER="${MAIL_USER}"
    INTERNAL_USER="${MAIL_USER}"
  fi
}

write_config() {
  identities
  mkdir -p "${STATE}/mail" "${STATE}/run"
  # Dovecot checks that the base_dir's parents are not writable by others; keep the tree private.
  chmod 755 "${STATE}" "${STATE}/run"
  printf '%s:{PLAIN}%s::::::\n' "${USER_NAME}" "${PASSWORD}" >"${STATE}/users"
  chmod 644 "${STATE}/users"
  chown -R "${MAIL_USER}:${MAIL_GROUP}" "${STATE}/mail"
  cat >"${CONF}" <<EOF
# managed by deploy/local/dovecot.sh: a throwaway IMAP server for tests (loopback, plain text)
base_dir = ${STATE}/run
state_dir = ${STATE}/run
instance_name = leadstream-$(printf '%s' "${STATE}" | cksum | cut -d' ' -f1)
log_path = ${LOG_FILE}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = ${LOGIN_USER}
default_internal_user = ${INTERNAL_USER}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:${STATE}/mail/%u
mail_uid = ${MAIL_USER}
mail_gid = ${MAIL_GROUP}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${STATE}/users
}
userdb {
  driver = static
  args = uid=${MAIL_USER} gid=${MAIL_GROUP} home=${STATE}/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${PORT}
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF
}

running_pid() {
  local pid
  pid="$(read_pid "${PID_FILE}")"
  if [[ -n "${pid}" ]] && pid_alive "${pid}" && [[ "$(pid_args "${pid}")" == *dovecot* ]]; then
    echo "${pid}"
  fi
}

cmd_start() {
  check_port_var DOVECOT_IMAP_PORT "${PORT}"
  cmd_install
  [[ "${STATE}" == "${LS_RUN_DIR}/dovecot" ]] && ensure_ignored_dir "${LS_RUN_DIR}" dovecot
  mkdir -p "${STATE}"
  take_lock 9 "${STATE}/.lock"
  if [[ -n "$(running_pid)" ]]; then
    log "already running (pid $(running_pid), 127.0.0.1:${PORT})"
    return 0
  fi
  if port_in_use "${PORT}"; then
    die "port 127.0.0.1:${PORT} is already in use by another process; choose another with DOVECOT_IMAP_PORT"
  fi
  write_config
  log "starting Dovecot on 127.0.0.1:${PORT} (state ${STATE})"
  # -F: stay in the foreground, so the PID is the master's own and stop can signal exactly it.
  "$(dovecot_bin)" -F -c "${CONF}" >>"${LOG_FILE}" 2>&1 9>&- 8>&- </dev/null &
  echo $! >"${PID_FILE}"
  local deadline=$((SECONDS + START_TIMEOUT))
  until port_in_use "${PORT}"; do
    if ! pid_alive "$(read_pid "${PID_FILE}")"; then
      tail -n 20 "${LOG_FILE}" >&2 || true
      rm -f "${PID_FILE}"
      die "Dovecot exited at start; see ${LOG_FILE}"
    fi
    ((SECONDS < deadline)) || die "Dovecot does not answer on 127.0.0.1:${PORT} after ${START_TIMEOUT}s"
    sleep 0.2
  done
  log "ready: imap://${USER_NAME}@127.0.0.1:${PORT} (pid $(read_pid "${PID_FILE}"))"
}

cmd_stop() {
  local pid
  pid="$(running_pid)"
  if [[ -z "${pid}" ]]; then
    log "not running (state ${STATE})"
    rm -f "${PID_FILE}"
    return 0
  fi
  log "stopping Dovecot (pid ${pid})"
  kill -TERM "${pid}" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while pid_alive "${pid}"; do
    if ((SECONDS >= deadline)); then
      log "still running after 15s: KILL"
      kill -KILL "${pid}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "${PID_FILE}"
  log "stopped"
}

cmd_status() {
  if [[ -n "$(running_pid)" ]] && port_in_use "${PORT}"; then
    echo "dovecot: running (pid $(running_pid), 127.0.0.1:${PORT}, state ${STATE})"
    return 0
  fi
  echo "dovecot: stopped (state ${STATE})"
  return 3
}

cmd_env() {
  printf 'export DOVECOT_IMAP_HOST=127.0.0.1 DOVECOT_IMAP_PORT=%s DOVECOT_USER=%q DOVECOT_PASSWORD=%q\n' \
    "${PORT}" "${USER_NAME}" "${PASSWORD}"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
