#!/usr/bin/env bash
# deploy/local/frontend.sh {node|chromium|deps|asyncapi}
#
# What the console needs on a machine, installed the way postgres.sh installs PostgreSQL: with apt-get
# when running as root on Debian/Ubuntu and the tool is missing, else a clear message of what to install.
#
#   node      node and npm on PATH (Debian: apt-get install nodejs npm). The console serves its front-end
#             packages (htmx, its SSE extension, Chart.js) as npm installs them: no build step.
#   deps      npm ci in services/console (the versions of package-lock.json), when node_modules is older
#             than the lock file.
#   asyncapi  npm ci in tools/asyncapi: the official AsyncAPI CLI (`asyncapi validate` in make schemas-check)
#             and its HTML template (make docs), at the versions of tools/asyncapi/package-lock.json. Install
#             scripts are not run (the template's PDF renderer would download a browser; the HTML needs none).
#   chromium  Chromium for the browser tests (Debian: apt-get install chromium -> /usr/bin/chromium).
#             Playwright drives it; its own browser download is not used. LEADSTREAM_CHROMIUM overrides
#             the path.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

LS_PROG="frontend.sh"
# shellcheck source=SCRIPTDIR/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

CONSOLE_DIR="${LS_REPO_ROOT}/services/console"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

apt_install() {
  local what="$1"
  shift
  [[ "$(id -u)" == 0 ]] || die "${what} is not installed and installing it needs root (apt-get install $*); install it and retry"
  command -v apt-get >/dev/null 2>&1 || die "${what} is not installed and apt-get is not available: install $* yourself"
  take_lock 9 "${LS_USER_CACHE}/apt.lock"
  log "installing ${what} with apt-get (apt-get update first) ..."
  apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 9>&- || die "apt-get install $* failed"
}

cmd_node() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    return 0
  fi
  apt_install "node and npm" nodejs npm
  command -v npm >/dev/null 2>&1 || die "npm still not found after installing it"
}

cmd_deps() {
  cmd_node
  local stamp="${CONSOLE_DIR}/node_modules/.package-lock.json"
  if [[ -f "${stamp}" && "${stamp}" -nt "${CONSOLE_DIR}/package-lock.json" ]]; then
    return 0
  fi
  log "npm ci in services/console"
  (cd "${CONSOLE_DIR}" && npm ci --no-audit --no-fund --loglevel=error >&2)
}

cmd_asyncapi() {
  cmd_node
  local dir="${LS_REPO_ROOT}/tools/asyncapi"
  local stamp="${dir}/node_modules/.package-lock.json"
  if [[ -f "${stamp}" && "${stamp}" -nt "${dir}/package-lock.json" ]]; then
    return 0
  fi
  log "npm ci in tools/asyncapi (the AsyncAPI CLI; a few minutes the first time)"
  (cd "${dir}" && PUPPETEER_SKIP_DOWNLOAD=true npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
}

chromium_path() {
  if [[ -n "${LEADSTREAM_CHROMIUM:-}" ]]; then
    printf '%s\n' "${LEADSTREAM_CHROMIUM}"
  elif command -v chromium >/dev/null 2>&1; then
    command -v chromium
  else
    printf '/usr/bin/chromium\n'
  fi
}

cmd_chromium() {
  local path
  path="$(chromium_path)"
  if [[ -x "${path}" ]]; then
    return 0
  fi
  [[ -z "${LEADSTREAM_CHROMIUM:-}" ]] || die "LEADSTREAM_CHROMIUM=${LEADSTREAM_CHROMIUM} is not an executable"
  apt_install Chromium chromium
  [[ -x "$(chromium_path)" ]] || die "chromium still not found after installing it"
}

mkdir -p "${LS_USER_CACHE}"
case "${1:-}" in
  node) cmd_node ;;
  deps) cmd_deps ;;
  asyncapi) cmd_asyncapi ;;
  chromium) cmd_chromium ;;
  *) usage ;;
esac
