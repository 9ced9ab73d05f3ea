# shellcheck shell=bash disable=SC2034
# Shared helpers for deploy/local/*.sh. Sourced, never executed.
#
# Sets: LS_LOCAL_DIR (this folder), LS_REPO_ROOT (two folders up), LS_RUN_DIR (<repo>/.run, or
#       LEADSTREAM_RUN_DIR: servers' state, logs and pid files, so a second broker or database, e.g. the
#       outage tests' own, lives apart from the usual ones), LS_REPO_CACHE (<repo>/.cache),
#       LS_USER_CACHE (per-user cache outside the clone).

LS_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
LS_REPO_ROOT="$(cd "${LS_LOCAL_DIR}/../.." && pwd -P)"
LS_RUN_DIR="${LEADSTREAM_RUN_DIR:-${LS_REPO_ROOT}/.run}"
LS_REPO_CACHE="${LS_REPO_ROOT}/.cache"
LS_USER_CACHE="${LEADSTREAM_CACHE_DIR:-${HOME:-/tmp}/.cache/leadstream}"
LS_PROG="${LS_PROG:-$(basename "$0")}"

log() { printf '%s: %s\n' "${LS_PROG}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${LS_PROG}" "$*" >&2; exit 1; }

# mkdir a state/cache folder inside the repo and make it ignore itself, so git status stays
# clean even if the repo's .gitignore does not list it.
ensure_ignored_dir() {
  local top="$1" sub="${2:-}"
  mkdir -p "${top}${sub:+/${sub}}"
  if [[ ! -e "${top}/.gitignore" ]]; then
    printf '# created by deploy/local: local state, never committed\n*\n' >"${top}/.gitignore"
  fi
}

# True when something accepts TCP connections on 127.0.0.1:<port>.
port_in_use() {
  local port="$1"
  if command -v timeout >/dev/null 2>&1; then
    timeout 3 bash -c ": <>/dev/tcp/127.0.0.1/${port}" 2>/dev/null
  else
    (: <>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
  fi
}

# True when <pid> is alive (signal 0 works) and is not a zombie.
pid_alive() {
  local pid="$1" state
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  state="$(ps -o stat= -p "${pid}" 2>/dev/null || true)"
  [[ -n "${state}" && "${state}" != Z* ]]
}

# Command line of <pid> (empty when gone). -ww: whole, however wide; ps otherwise cuts it at the terminal's width
# or 80 columns (under pytest, say), and a broker's command line ends with the properties file that tells it is ours.
pid_args() { ps -ww -o args= -p "$1" 2>/dev/null || true; }

# Read a pid file; prints the pid or nothing.
read_pid() {
  local f="$1" pid=""
  if [[ -f "${f}" ]]; then
    read -r pid <"${f}" || true
  fi
  if [[ "${pid}" =~ ^[0-9]+$ ]]; then
    printf '%s\n' "${pid}"
  fi
}

# take_lock FD FILE: exclusive lock on FILE through fd FD (8 or 9) for the rest of the script
# (flock where it exists, e.g. Linux; without it, no lock). Close the fd (8>&- 9>&-) for any
# daemon started while holding it, or the daemon keeps the lock.
take_lock() {
  local fd="$1" file="$2" timeout="${LS_LOCK_TIMEOUT:-600}"
  command -v flock >/dev/null 2>&1 || return 0
  case "${fd}" in
    8) exec 8>"${file}" ;;
    9) exec 9>"${file}" ;;
    *) die "take_lock: unsupported fd ${fd}" ;;
  esac
  if ! flock -w "${timeout}" "${fd}"; then
    die "could not lock ${file} within ${timeout}s (another deploy/local script still running?)"
  fi
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

check_port_var() {
  local name="$1" value="$2"
  if ! is_uint "${value}" || ((value < 1 || value > 65535)); then
    die "${name}=${value} is not a TCP port number"
  fi
}
