#!/usr/bin/env bash
# deploy/local/kafka.sh {fetch|start|stop|status|logs|reset}
#
# A real Apache Kafka broker (single combined KRaft node: broker + controller) on 127.0.0.1,
# without Docker: the broker's jars come from Maven Central through Maven.
#
#   fetch   resolve deploy/local/kafka-pom.xml into <repo>/.cache/kafka-<version>/libs
#           (Maven's local repo is a per-user cache outside the clone, so a fresh clone on the
#           same machine copies jars without downloading) and verify them (sha256 manifest).
#   start   fetch if needed, write .run/kafka/server.properties, format storage once, start the
#           broker in the background and wait until it answers a real request. Idempotent.
#   stop    stop the broker this checkout started (by its PID): TERM, up to 30 s, then KILL.
#   status  print running/stopped; exit 0 when running, 3 when stopped.
#   logs    print the broker log (logs [N] for the last N lines, logs -f to follow).
#   reset   stop, then delete .run/kafka (all topics and offsets; keeps the jars).
#
# Environment (defaults):
#   KAFKA_VERSION=4.1.1          broker version (Scala 2.13 build). 4.1.1 works with aiokafka
#                                0.14 (checked with deploy/local/smoke.py), so no 4.0.x fallback.
#   KAFKA_PORT=19092             client listener, 127.0.0.1 only
#   KAFKA_CONTROLLER_PORT=19093  KRaft controller listener, 127.0.0.1 only
#   KAFKA_START_TIMEOUT=90       seconds to wait for the broker to answer
#   KAFKA_STOP_TIMEOUT=30        seconds between TERM and KILL
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx1g"   KAFKA_JVM_OPTS=""   extra JVM options
#   LEADSTREAM_CACHE_DIR=~/.cache/leadstream   per-user cache (Maven repo in <it>/m2)
#   JAVA_HOME / java on PATH     Java 17+ (Kafka 4 brokers need 17)
#   MVN=mvn                      Maven binary
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

LS_PROG="kafka.sh"
# shellcheck source=SCRIPTDIR/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
MVN="${MVN:-mvn}"
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

POM="${LS_LOCAL_DIR}/kafka-pom.xml"
KAFKA_HOME="${LS_REPO_CACHE}/kafka-${KAFKA_VERSION}"
LIBS="${KAFKA_HOME}/libs"
MANIFEST="${KAFKA_HOME}/libs.sha256"
POM_STAMP="${KAFKA_HOME}/kafka-pom.xml"
M2_REPO="${LS_USER_CACHE}/m2"

STATE="${LS_RUN_DIR}/kafka"
DATA="${STATE}/data"
PROPS="${STATE}/server.properties"
LOGFILE="${STATE}/kafka.log"
PIDFILE="${STATE}/kafka.pid"
CLUSTER_ID_FILE="${STATE}/cluster.id"
BOOTSTRAP_FILE="${STATE}/bootstrap"
VERSION_FILE="${STATE}/version"
BROKER_LOG4J="${STATE}/log4j2.properties"
TOOLS_LOG4J="${STATE}/tools-log4j2.properties"
API_VERSIONS_FILE="${STATE}/api-versions.txt"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- java / jars

JAVA_BIN=""
find_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
    JAVA_BIN="${JAVA_HOME}/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA_BIN="$(command -v java)"
  else
    die "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME"
  fi
  local line major
  line="$("${JAVA_BIN}" -version 2>&1 | head -n 1)"
  major="$(printf '%s\n' "${line}" | sed -n 's/.*version "\([0-9][0-9]*\)[."].*/\1/p')"
  [[ "${major}" == 1 ]] && major=8
  if [[ -z "${major}" ]] || ((major < 17)); then
    die "Kafka ${KAFKA_VERSION} needs Java 17+, but ${JAVA_BIN} is: ${line}"
  fi
}

sha256_cmd() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$@"
  else
    shasum -a 256 "$@"
  fi
}

# Jars without which the broker or our checks cannot run.
required_jars() {
  printf '%s\n' "kafka_2.13-${KAFKA_VERSION}.jar" "kafka-clients-${KAFKA_VERSION}.jar" \
    "kafka-server-${KAFKA_VERSION}.jar" "kafka-metadata-${KAFKA_VERSION}.jar" \
    "kafka-raft-${KAFKA_VERSION}.jar" "kafka-tools-${KAFKA_VERSION}.jar"
}

# True when LIBS holds exactly what the manifest lists, every checksum matches, the
# required jars and a log4j backend are there, and the pom has not changed since.
libs_ok() {
  [[ -f "${MANIFEST}" && -d "${LIBS}" && -f "${POM_STAMP}" ]] || return 1
  cmp -s "${POM}" "${POM_STAMP}" || return 1
  local jar n_listed n_present
  while IFS= read -r jar; do
    [[ -s "${LIBS}/${jar}" ]] || return 1
  done < <(required_jars)
  compgen -G "${LIBS}/scala-library-2.13.*.jar" >/dev/null || return 1
  compgen -G "${LIBS}/log4j-core-*.jar" >/dev/null || return 1
  compgen -G "${LIBS}/log4j-slf4j-impl-*.jar" >/dev/null || return 1
  n_listed="$(grep -c '\.jar$' "${MANIFEST}" || true)"
  n_present="$(find "${LIBS}" -maxdepth 1 -name '*.jar' | wc -l | tr -d ' ')"
  [[ "${n_listed}" -gt 0 && "${n_listed}" == "${n_present}" ]] || return 1
  (cd "${LIBS}" && sha256_cmd -c --status "${MANIFEST}") || return 1
}

do_fetch() {
  [[ -f "${POM}" ]] || die "missing ${POM}"
  ensure_ignored_dir "${LS_REPO_CACHE}"
  take_lock 8 "${LS_REPO_CACHE}/.kafka-${KAFKA_VERSION}.lock"
  if libs_ok; then
    log "Kafka ${KAFKA_VERSION} jars present and verified in ${LIBS}"
    return 0
  fi
  command -v "${MVN}" >/dev/null 2>&1 ||
    die "Maven (${MVN}) not found: install it (Debian: apt-get install maven; macOS: brew install maven)"
  find_java

  local started tmp
  started="${SECONDS}"
  log "fetching Kafka ${KAFKA_VERSION} (Scala 2.13) jars with Maven (Maven repo ${M2_REPO}) ..."
  mkdir -p "${M2_REPO}" "${KAFKA_HOME}"
  tmp="$(mktemp -d "${KAFKA_HOME}/libs.tmp.XXXXXX")"
  # -C: fail on a checksum mismatch instead of warning. Output goes to fetch.log, shown on failure.
  if ! "${MVN}" -B -q -C -Dstyle.color=never -f "${POM}" -Dkafka.version="${KAFKA_VERSION}" \
    -Dmaven.repo.local="${M2_REPO}" \
    "${MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="${tmp}" >"${KAFKA_HOME}/fetch.log" 2>&1; then
    rm -rf "${tmp}"
    tail -n 40 "${KAFKA_HOME}/fetch.log" >&2 || true
    die "Maven could not fetch Kafka ${KAFKA_VERSION} (is Maven Central reachable? is the version right?); log: ${KAFKA_HOME}/fetch.log"
  fi

  local jar
  while IFS= read -r jar; do
    [[ -s "${tmp}/${jar}" ]] || {
      rm -rf "${tmp}"
      die "fetch incomplete: ${jar} missing after Maven ran"
    }
  done < <(required_jars)
  # every jar must be a readable zip (Maven -C already checked the downloads' checksums)
  if command -v unzip >/dev/null 2>&1; then
    for jar in "${tmp}"/*.jar; do
      unzip -tqq "${jar}" >/dev/null 2>&1 || {
        rm -rf "${tmp}"
        die "fetch corrupt: ${jar##*/} is not a readable jar (delete ${M2_REPO} and fetch again)"
      }
    done
  fi

  rm -rf "${LIBS}" "${MANIFEST}"
  (cd "${tmp}" && find . -maxdepth 1 -name '*.jar' | sed 's#^\./##' | LC_ALL=C sort |
    while IFS= read -r jar; do sha256_cmd "${jar}"; done) >"${MANIFEST}.tmp"
  mv "${tmp}" "${LIBS}"
  cp "${POM}" "${POM_STAMP}"
  mv "${MANIFEST}.tmp" "${MANIFEST}"
  libs_ok || die "fetched jars failed verification in ${LIBS}"
  log "fetched $(grep -c '\.jar$' "${MANIFEST}") jars into ${LIBS} in $((SECONDS - started))s"
}

# ---------------------------------------------------------------- broker process

# True when <pid> is a live broker started by this checkout's start.
is_our_broker() {
  local pid="$1" args
  pid_alive "${pid}" || return 1
  args="$(pid_args "${pid}")"
  [[ "${args}" == *kafka.Kafka* && "${args}" == *"${PROPS}"* ]]
}

running_pid() {
  local pid
  pid="$(read_pid "${PIDFILE}")"
  if [[ -n "${pid}" ]] && is_our_broker "${pid}"; then
    printf '%s\n' "${pid}"
  fi
}

java_tool() {
  # Run a Kafka command-line tool class from the fetched jars, quietly logging to stderr.
  local cmd=("${JAVA_BIN}" -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto
    "-Dlog4j2.configurationFile=${TOOLS_LOG4J}" -cp "${LIBS}/*" "$@")
  if command -v timeout >/dev/null 2>&1; then
    timeout 60 "${cmd[@]}"
  else
    "${cmd[@]}"
  fi
}

# A real request: ApiVersions to the broker via Kafka's own admin tool.
broker_answers() {
  local bootstrap="$1"
  java_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "${bootstrap}" \
    >"${API_VERSIONS_FILE}.tmp" 2>&1 &&
    mv "${API_VERSIONS_FILE}.tmp" "${API_VERSIONS_FILE}"
}

show_log_tail() {
  if [[ -f "${LOGFILE}" ]]; then
    log "last lines of ${LOGFILE}:"
    tail -n "${1:-40}" "${LOGFILE}" >&2 || true
  fi
}

# Wait until the broker <pid> answers on <port>, or fail (stopping it) after the deadline.
wait_ready() {
  local pid="$1" port="$2" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while :; do
    if ! pid_alive "${pid}"; then
      show_log_tail 60
      rm -f "${PIDFILE}"
      die "the broker (pid ${pid}) exited during startup; see ${LOGFILE}"
    fi
    if port_in_use "${port}" && broker_answers "127.0.0.1:${port}"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail 60
      log "stopping the broker that did not come up (pid ${pid})"
      terminate "${pid}"
      rm -f "${PIDFILE}"
      die "the broker did not answer on 127.0.0.1:${port} within ${KAFKA_START_TIMEOUT}s"
    fi
    sleep 1
  done
}

terminate() {
  local pid="$1" deadline
  kill -TERM "${pid}" 2>/dev/null || return 0
  deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while pid_alive "${pid}" && ((SECONDS < deadline)); do sleep 0.5; done
  if pid_alive "${pid}"; then
    log "broker (pid ${pid}) still running after ${KAFKA_STOP_TIMEOUT}s: sending KILL"
    kill -KILL "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pid_alive "${pid}" && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  if pid_alive "${pid}"; then
    die "could not stop broker pid ${pid}"
  fi
}

write_config() {
  local tmp="${PROPS}.tmp"
  cat >"${tmp}" <<EOF
# Generated by deploy/local/kafka.sh on each start; edits are overwritten.
# Single combined KRaft node (broker + controller) for local development and tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${DATA}

# one node: replication factor 1 everywhere, including the internal topics
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# topics are created explicitly (as Strimzi does in production)
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=6

# fast tests: no wait before the first rebalance, short sessions allowed
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# retention for topics that do not set their own (event topics use retention.ms=-1)
log.retention.hours=168
log.segment.bytes=67108864
log.retention.check.interval.ms=300000

# small machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  mv "${tmp}" "${PROPS}"

  cat >"${BROKER_LOG4J}.tmp" <<'EOF'
# Generated by deploy/local/kafka.sh. Broker logging: INFO to stdout (-> kafka.log).
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = warn
EOF
  mv "${BROKER_LOG4J}.tmp" "${BROKER_LOG4J}"

  cat >"${TOOLS_LOG4J}.tmp" <<'EOF'
# Generated by deploy/local/kafka.sh. Command-line tools: warnings only, to stderr.
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
EOF
  mv "${TOOLS_LOG4J}.tmp" "${TOOLS_LOG4J}"
}

new_cluster_id() {
  # 16 random bytes, base64url without padding: 22 characters. Never one starting with "-", as Kafka's own
  # Uuid.randomUuid() does not make them: a command line reads such an id as an option (1 in 64 did).
  local cid
  while :; do
    cid="$(head -c 16 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_')"
    [[ "${cid}" == -* ]] || break
  done
  printf '%s\n' "${cid}"
}

format_storage() {
  local cid
  if [[ -s "${CLUSTER_ID_FILE}" ]]; then
    read -r cid <"${CLUSTER_ID_FILE}" || true
  fi
  if [[ ! "${cid:-}" =~ ^[A-Za-z0-9_-]{22}$ ]]; then
    cid="$(new_cluster_id)"
    printf '%s\n' "${cid}" >"${CLUSTER_ID_FILE}"
  fi
  if [[ -f "${DATA}/meta.properties" ]]; then
    return 0
  fi
  log "formatting storage in ${DATA} (cluster id ${cid})"
  mkdir -p "${DATA}"
  # "--cluster-id=ID": an id kept from before (cluster.id) may still start with "-".
  java_tool kafka.tools.StorageTool format "--cluster-id=${cid}" -c "${PROPS}" --ignore-formatted >&2 ||
    die "formatting Kafka storage failed (${DATA})"
  printf '%s\n' "${KAFKA_VERSION}" >"${VERSION_FILE}"
}

cmd_start() {
  check_port_var KAFKA_PORT "${KAFKA_PORT}"
  check_port_var KAFKA_CONTROLLER_PORT "${KAFKA_CONTROLLER_PORT}"
  [[ "${KAFKA_PORT}" != "${KAFKA_CONTROLLER_PORT}" ]] ||
    die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
  libs_ok || do_fetch
  find_java
  ensure_ignored_dir "${LS_RUN_DIR}" kafka
  take_lock 9 "${STATE}/.lock"

  local pid bootstrap
  pid="$(running_pid)"
  if [[ -n "${pid}" ]]; then
    bootstrap="$(cat "${BOOTSTRAP_FILE}" 2>/dev/null || echo "127.0.0.1:${KAFKA_PORT}")"
    if [[ "${bootstrap}" != "127.0.0.1:${KAFKA_PORT}" ]]; then
      log "warning: the running broker listens on ${bootstrap}, not KAFKA_PORT=${KAFKA_PORT} (stop it to change ports)"
    fi
    wait_ready "${pid}" "${bootstrap##*:}"
    log "already running (pid ${pid}, bootstrap ${bootstrap})"
    return 0
  fi
  if [[ -f "${PIDFILE}" ]]; then
    log "removing stale pid file ${PIDFILE}"
    rm -f "${PIDFILE}"
  fi

  local port
  for port in "${KAFKA_PORT}" "${KAFKA_CONTROLLER_PORT}"; do
    if port_in_use "${port}"; then
      die "port 127.0.0.1:${port} is already in use by another process (not a broker started from ${LS_REPO_ROOT}); stop it or choose other ports with KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    fi
  done

  if [[ -f "${VERSION_FILE}" ]] && [[ "$(cat "${VERSION_FILE}")" != "${KAFKA_VERSION}" ]]; then
    log "note: ${DATA} was formatted by Kafka $(cat "${VERSION_FILE}"); starting ${KAFKA_VERSION} on it (kafka.sh reset wipes it if that fails)"
  fi

  write_config
  format_storage

  local started heap=() extra=()
  started="${SECONDS}"
  read -r -a heap <<<"${KAFKA_HEAP_OPTS}"
  if [[ -n "${KAFKA_JVM_OPTS}" ]]; then
    read -r -a extra <<<"${KAFKA_JVM_OPTS}"
  fi
  local cmd=("${JAVA_BIN}" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=${BROKER_LOG4J}" "-Dkafka.logs.dir=${STATE}/logs"
    ${extra[@]+"${extra[@]}"} -cp "${LIBS}/*" kafka.Kafka "${PROPS}")

  log "starting Kafka ${KAFKA_VERSION} on 127.0.0.1:${KAFKA_PORT} (controller ${KAFKA_CONTROLLER_PORT}), log ${LOGFILE}"
  printf '\n===== %s start (Kafka %s) =====\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "${KAFKA_VERSION}" >>"${LOGFILE}"
  rm -f "${PIDFILE}"
  # The child writes its own PID then execs java, so the pid file is java's PID even if
  # setsid forks. setsid (where present) detaches it from the caller's session; fd 8/9
  # (our locks) are closed so the daemon does not hold them.
  local launcher=(nohup)
  if command -v setsid >/dev/null 2>&1; then launcher=(setsid nohup); fi
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the child shell
  (cd "${STATE}" && exec "${launcher[@]}" bash -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "${PIDFILE}" "${cmd[@]}" >>"${LOGFILE}" 2>&1 </dev/null 8>&- 9>&-) &

  local waited=0
  until pid="$(read_pid "${PIDFILE}")" && [[ -n "${pid}" ]]; do
    sleep 0.1
    waited=$((waited + 1))
    if ((waited > 100)); then
      show_log_tail 20
      die "the broker process did not start (no pid file after 10s)"
    fi
  done
  printf '127.0.0.1:%s\n' "${KAFKA_PORT}" >"${BOOTSTRAP_FILE}"

  wait_ready "${pid}" "${KAFKA_PORT}"
  log "Kafka ${KAFKA_VERSION} ready on 127.0.0.1:${KAFKA_PORT} (pid ${pid}) after $((SECONDS - started))s"
}

cmd_stop() {
  mkdir -p "${STATE}"
  take_lock 9 "${STATE}/.lock"
  local pid
  pid="$(read_pid "${PIDFILE}")"
  if [[ -z "${pid}" ]]; then
    log "not running (no pid file)"
    rm -f "${PIDFILE}"
    return 0
  fi
  if ! is_our_broker "${pid}"; then
    log "not running (pid ${pid} is gone or not our broker); removing stale pid file"
    rm -f "${PIDFILE}"
    return 0
  fi
  log "stopping broker (pid ${pid}) ..."
  terminate "${pid}"
  rm -f "${PIDFILE}"
  log "stopped"
}

cmd_status() {
  local pid bootstrap
  pid="$(running_pid)"
  if [[ -z "${pid}" ]]; then
    echo "kafka: stopped"
    return 3
  fi
  bootstrap="$(cat "${BOOTSTRAP_FILE}" 2>/dev/null || echo "127.0.0.1:${KAFKA_PORT}")"
  if port_in_use "${bootstrap##*:}"; then
    echo "kafka: running (pid ${pid}, bootstrap ${bootstrap}, version $(cat "${VERSION_FILE}" 2>/dev/null || echo "${KAFKA_VERSION}"))"
  else
    echo "kafka: running (pid ${pid}) but not accepting connections on ${bootstrap} yet"
  fi
}

cmd_logs() {
  [[ -f "${LOGFILE}" ]] || die "no log yet (${LOGFILE})"
  case "${1:-}" in
    -f) exec tail -n 50 -F "${LOGFILE}" ;;
    '') tail -n 100 "${LOGFILE}" ;;
    *)
      is_uint "$1" || die "logs takes a line count or -f"
      tail -n "$1" "${LOGFILE}"
      ;;
  esac
}

cmd_reset() {
  cmd_stop
  log "deleting ${STATE} (topics, offsets, cluster id)"
  rm -rf "${STATE}"
}

main() {
  local action="${1:-}"
  shift || true
  case "${action}" in
    fetch) do_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    reset) cmd_reset ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
