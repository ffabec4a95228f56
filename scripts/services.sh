#!/usr/bin/env bash
# Install, start, stop and report the platform's local services on a Debian 12 machine without
# Docker or systemd: PostgreSQL 15 and Redis 7 from Debian packages, Apache Kafka 4 (one KRaft node,
# broker + controller) from Maven Central jars.
#
#   scripts/services.sh <postgres|redis|kafka|all> <install|start|stop|status>
#
# Invariants:
# - Every piece of state (data, logs, pid files, sockets) lives under RUN_DIR (default <repo>/.run).
# - Everything listens on 127.0.0.1 only.
# - Idempotent: start on a running service and stop on a stopped one say so and exit 0.
# - status exits 0 when up, 3 when down (for `all`: 0 only when all three are up).
# - install touches only what is missing (apt-get update at most once; Maven only when the pom
#   changed); start installs implicitly. Start/stop/install hold a lock on RUN_DIR, so parallel
#   callers queue instead of racing.
#
# Environment (defaults): RUN_DIR=<repo>/.run PG_PORT=55432 REDIS_PORT=56379 KAFKA_PORT=19092
# KAFKA_CONTROLLER_PORT=19093 KAFKA_ADVERTISED_PORT=$KAFKA_PORT (chaos: a fault proxy's port) PG_USER=brokerage PG_PASSWORD=brokerage PG_DB=brokerage
# KAFKA_HEAP_OPTS="-Xms512m -Xmx512m" KAFKA_JVM_PERFORMANCE_OPTS=(Kafka's own launcher's, below)
# KAFKA_START_TIMEOUT=90 INSTALL_JDK=0 (1: apt-get install a JRE and Maven when missing instead of failing).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

RUN_DIR=${RUN_DIR:-$REPO_DIR/.run}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_ADVERTISED_PORT=${KAFKA_ADVERTISED_PORT:-$KAFKA_PORT}
PG_USER=${PG_USER:-brokerage}
PG_PASSWORD=${PG_PASSWORD:-brokerage}
PG_DB=${PG_DB:-brokerage}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}
# The garbage collector flags Kafka's own launcher (bin/kafka-run-class.sh) sets, since the broker starts from its
# jars here, not that script (MaxInlineLevel=15 and -server are the JDK 17 defaults). Without MaxGCPauseMillis=20
# G1 aims at 200 ms pauses: on the 512 MB heap its young collections averaged 61 ms (jstat), and every
# transaction commit met them (docs/PERFORMANCE.md, engine over Kafka).
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
INSTALL_JDK=${INSTALL_JDK:-0}

# ---------------------------------------------------------------------------------------------
# PostgreSQL 15
# ---------------------------------------------------------------------------------------------
# Absolute paths: a different pg_ctl may come first on PATH.
PG_BIN=/usr/lib/postgresql/15/bin
PG_HOME=$RUN_DIR/postgres
PG_DATA=$PG_HOME/data
PG_SOCK=$PG_HOME/socket
PG_LOG=$PG_HOME/postgres.log

as_postgres() { runuser -u postgres -- "$@"; }

pg_install() {
    if [[ -x $PG_BIN/initdb && -x $PG_BIN/psql ]] && id postgres >/dev/null 2>&1; then
        return 0
    fi
    apt_install postgres postgresql-15 postgresql-client-15 || return 1
    [[ -x $PG_BIN/initdb ]] || die postgres "installed postgresql-15 but $PG_BIN/initdb is missing"
    log postgres "installed PostgreSQL 15"
}

pg_running() {
    [[ -s $PG_DATA/PG_VERSION ]] && as_postgres "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

# The server runs as the postgres OS user, so every directory above PG_HOME must be searchable by it. A clone
# in `mktemp -d` (mode 0700) is not: grant search (o+x, no read) on exactly the directories that lack it.
pg_path_searchable() {
    local dir=$PG_HOME
    while [[ $dir != / ]]; do
        dir=$(dirname "$dir")
        if ! as_postgres test -x "$dir"; then
            chmod o+x "$dir"
            log postgres "made $dir searchable (o+x) for the postgres user"
        fi
    done
}

pg_initdb() {
    pg_path_searchable
    [[ -s $PG_DATA/PG_VERSION ]] && return 0
    log postgres "initdb $PG_DATA"
    mkdir -p "$PG_DATA" "$PG_SOCK"
    chown -R postgres:postgres "$PG_HOME"
    chmod 700 "$PG_DATA"
    # Local socket: peer (only the postgres OS user is superuser); TCP: password (scram).
    as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PG_HOME/initdb.log" 2>&1 ||
        die postgres "initdb failed; see $PG_HOME/initdb.log"
    # The repo's tuning, then the per-machine settings; later includes win.
    printf "\ninclude_if_exists 'brokerage.conf'\ninclude_if_exists 'brokerage_runtime.conf'\n" \
        >>"$PG_DATA/postgresql.conf"
}

# Refreshed on every start so edits to config/postgres and a changed PG_PORT take effect.
pg_configure() {
    mkdir -p "$PG_SOCK"
    cp "$REPO_DIR/config/postgres/postgresql.conf" "$PG_DATA/brokerage.conf"
    cat >"$PG_DATA/brokerage_runtime.conf" <<EOF
# Generated by scripts/services.sh on each start; do not edit.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
EOF
    chown postgres:postgres "$PG_DATA/brokerage.conf" "$PG_DATA/brokerage_runtime.conf" "$PG_SOCK"
    touch "$PG_LOG"
    chown postgres:postgres "$PG_LOG"
}

# Role and database for the application; idempotent, and re-applies the password from the env.
pg_bootstrap() {
    as_postgres "$PG_BIN/psql" -X -q -h "$PG_SOCK" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 \
        -v user="$PG_USER" -v pw="$PG_PASSWORD" -v db="$PG_DB" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
-- CREATEDB: the test suite creates and drops its own databases. CREATEROLE: `manage.py db_roles` creates the
-- runtime role (no ownership, INSERT/SELECT only on the audit trail) that tests/accounts/test_db_roles.py uses.
SELECT format('ALTER ROLE %I LOGIN CREATEDB CREATEROLE PASSWORD %L', :'user', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
    PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" \
        -d "$PG_DB" -tAc 'SELECT 1' >/dev/null ||
        die postgres "password login as $PG_USER to $PG_DB on 127.0.0.1:$PG_PORT failed"
}

pg_start() {
    if pg_running; then
        pg_ready || die postgres "running from $PG_DATA but not answering on 127.0.0.1:$PG_PORT" \
            "(started with another PG_PORT?); run '$0 postgres stop' first"
        pg_bootstrap
        log postgres "already running on 127.0.0.1:$PG_PORT"
        return 0
    fi
    if port_open "$PG_PORT"; then
        die postgres "port $PG_PORT is taken by another process; set PG_PORT"
    fi
    pg_install
    pg_initdb
    pg_configure
    log postgres "starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
    # 9>&-: the daemons must not inherit the lock (see main), or they would hold it forever.
    if ! as_postgres "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s 9>&-; then
        tail -n 30 "$PG_LOG" >&2 || true
        die postgres "pg_ctl start failed (log tail above)"
    fi
    local deadline=$((SECONDS + 30))
    until pg_ready; do
        ((SECONDS >= deadline)) && die postgres "pg_isready got no answer on 127.0.0.1:$PG_PORT"
        sleep 0.3
    done
    pg_bootstrap
    log postgres "ready: postgresql://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DB"
}

pg_stop() {
    if ! pg_running; then
        log postgres "not running"
        return 0
    fi
    as_postgres "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s ||
        die postgres "pg_ctl stop failed; see $PG_LOG"
    log postgres "stopped"
}

pg_status() {
    if pg_running && pg_ready; then
        log postgres "up on 127.0.0.1:$PG_PORT (data $PG_DATA)"
        return 0
    fi
    log postgres "down"
    return 3
}

# ---------------------------------------------------------------------------------------------
# Redis 7
# ---------------------------------------------------------------------------------------------
REDIS_HOME=$RUN_DIR/redis
REDIS_PID=$REDIS_HOME/redis.pid
REDIS_LOG=$REDIS_HOME/redis.log

redis_install() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return 0
    fi
    apt_install redis redis-server redis-tools || return 1
    log redis "installed $(redis-server --version | cut -d' ' -f1-3)"
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_start() {
    if pid_alive "$REDIS_PID" redis-server; then
        redis_ping || die redis "running (pid $(<"$REDIS_PID")) but no PONG on 127.0.0.1:$REDIS_PORT" \
            "(started with another REDIS_PORT?); run '$0 redis stop' first"
        log redis "already running on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    rm -f "$REDIS_PID"
    if port_open "$REDIS_PORT"; then
        die redis "port $REDIS_PORT is taken by another process; set REDIS_PORT"
    fi
    redis_install
    mkdir -p "$REDIS_HOME/data"
    log redis "starting on 127.0.0.1:$REDIS_PORT (log $REDIS_LOG)"
    redis-server "$REPO_DIR/config/redis/redis.conf" --port "$REDIS_PORT" \
        --dir "$REDIS_HOME/data" --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" 9>&-
    local deadline=$((SECONDS + 30))
    until redis_ping; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$REDIS_LOG" >&2 || true
            die redis "no PONG on 127.0.0.1:$REDIS_PORT after 30 s (log tail above)"
        fi
        sleep 0.2
    done
    log redis "ready: redis://127.0.0.1:$REDIS_PORT"
}

redis_stop() {
    if ! pid_alive "$REDIS_PID" redis-server; then
        rm -f "$REDIS_PID"
        log redis "not running"
        return 0
    fi
    local pid
    pid=$(<"$REDIS_PID")
    # SIGTERM: Redis flushes the append-only file and exits cleanly.
    kill -TERM "$pid"
    wait_pid_gone "$pid" 30 || die redis "pid $pid did not exit within 30 s"
    rm -f "$REDIS_PID"
    log redis "stopped"
}

redis_status() {
    if pid_alive "$REDIS_PID" redis-server && redis_ping; then
        log redis "up on 127.0.0.1:$REDIS_PORT (pid $(<"$REDIS_PID"))"
        return 0
    fi
    log redis "down"
    return 3
}

# ---------------------------------------------------------------------------------------------
# Kafka 4 (KRaft, one node)
# ---------------------------------------------------------------------------------------------
KAFKA_CONF_DIR=$REPO_DIR/config/kafka
KAFKA_HOME=$RUN_DIR/kafka
KAFKA_LIBS=$KAFKA_HOME/libs
KAFKA_DATA=$KAFKA_HOME/data
KAFKA_LOGS=$KAFKA_HOME/logs
KAFKA_PROPS=$KAFKA_HOME/server.properties
KAFKA_PID=$KAFKA_HOME/kafka.pid
KAFKA_LIBS_MARKER=$KAFKA_LIBS/.pom.sha256

java_major() {
    local v
    v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n 1)
    v=${v#1.} # 1.8 -> 8
    printf '%s\n' "${v%%.*}"
}

kafka_require_tools() {
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if ((${#missing[@]} > 0)); then
        if [[ $INSTALL_JDK == 1 ]]; then
            apt_install kafka "${missing[@]}" || return 1
        else
            log kafka "cannot install or start Kafka: ${missing[*]/openjdk-17-jre-headless/java (17+)}" \
                "not found. Run 'apt-get install openjdk-17-jre-headless maven'" \
                "(or rerun with INSTALL_JDK=1)."
            return 1
        fi
    fi
    local major
    major=$(java_major)
    if [[ -z $major ]] || ((major < 17)); then
        log kafka "Kafka 4 needs Java 17+, found '$(java -version 2>&1 | head -n 1)';" \
            "run 'apt-get install openjdk-17-jre-headless'"
        return 1
    fi
}

kafka_install() {
    kafka_require_tools || return 1
    local want
    want=$(sha256sum "$KAFKA_CONF_DIR/pom.xml" | cut -d' ' -f1)
    if [[ -s $KAFKA_LIBS_MARKER && $(<"$KAFKA_LIBS_MARKER") == "$want" ]]; then
        return 0
    fi
    log kafka "resolving jars from config/kafka/pom.xml into $KAFKA_LIBS (Maven)"
    local tmp=$KAFKA_HOME/libs.tmp
    rm -rf "$tmp"
    mkdir -p "$KAFKA_HOME"
    if ! mvn -q -B -f "$KAFKA_CONF_DIR/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
        tail -n 30 "$KAFKA_HOME/mvn.log" >&2 || true
        die kafka "mvn dependency:copy-dependencies failed (full log $KAFKA_HOME/mvn.log)"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die kafka "Maven produced no kafka_2.13 jar"
    # Swap the whole directory so a changed pom never leaves two versions of a jar on the classpath.
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    printf '%s\n' "$want" >"$KAFKA_LIBS_MARKER"
    log kafka "installed $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars" \
        "($(basename "$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" | head -n 1)" .jar))"
}

kafka_java() { # kafka_java <main class> <args...>: a Kafka tool on the installed classpath
    java -cp "$KAFKA_LIBS/*" "$@"
}

kafka_render() {
    mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
    render_template "$KAFKA_CONF_DIR/server.properties.template" "$KAFKA_PROPS" \
        "KAFKA_PORT=$KAFKA_PORT" "KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" \
        "KAFKA_ADVERTISED_PORT=$KAFKA_ADVERTISED_PORT" "KAFKA_DATA_DIR=$KAFKA_DATA"
}

# Formats the log dir once. --standalone writes this node as the only voter, with its controller
# endpoint, so the controller port is fixed for the life of the data dir.
kafka_format() {
    local port_file=$KAFKA_HOME/controller.port
    if [[ -f $KAFKA_DATA/meta.properties ]]; then
        if [[ -s $port_file && $(<"$port_file") != "$KAFKA_CONTROLLER_PORT" ]]; then
            die kafka "data in $KAFKA_DATA was formatted for controller port $(<"$port_file")," \
                "not $KAFKA_CONTROLLER_PORT; use that port or delete $KAFKA_DATA (loses all topics)"
        fi
        return 0
    fi
    local id_file=$KAFKA_HOME/cluster.id
    if [[ ! -s $id_file ]]; then
        kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$id_file.tmp"
        mv "$id_file.tmp" "$id_file"
    fi
    log kafka "formatting $KAFKA_DATA (cluster id $(<"$id_file"))"
    if ! kafka_java kafka.tools.StorageTool format -t "$(<"$id_file")" -c "$KAFKA_PROPS" \
        --standalone --ignore-formatted >"$KAFKA_LOGS/format.log" 2>&1; then
        cat "$KAFKA_LOGS/format.log" >&2
        die kafka "storage format failed"
    fi
    printf '%s\n' "$KAFKA_CONTROLLER_PORT" >"$port_file"
}

kafka_fail_start() { # prints the log tails, stops the half-started JVM, exits
    local pid=$1 reason=$2
    {
        printf -- '--- tail of %s ---\n' "$KAFKA_LOGS/server.log"
        tail -n 40 "$KAFKA_LOGS/server.log" 2>/dev/null || true
        printf -- '--- tail of %s ---\n' "$KAFKA_LOGS/kafka.out"
        tail -n 20 "$KAFKA_LOGS/kafka.out" 2>/dev/null || true
    } >&2
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_PID"
    die kafka "$reason"
}

kafka_start() {
    if pid_alive "$KAFKA_PID" kafka.Kafka; then
        port_open "$KAFKA_PORT" || die kafka "running (pid $(<"$KAFKA_PID")) but 127.0.0.1:$KAFKA_PORT" \
            "does not answer (still starting, or another KAFKA_PORT?); see $KAFKA_LOGS/server.log"
        log kafka "already running on 127.0.0.1:$KAFKA_PORT"
        return 0
    fi
    rm -f "$KAFKA_PID"
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$p"; then
            die kafka "port $p is taken by another process; set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
        fi
    done
    kafka_install || exit 1
    kafka_render
    kafka_format

    # Readiness looks only at log lines written after this point, not at an earlier run's.
    local log_file=$KAFKA_LOGS/server.log offset=0 pid
    [[ -f $log_file ]] && offset=$(stat -c %s "$log_file")
    log kafka "starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT, log $log_file)"
    # setsid + nohup: the broker outlives this script and the terminal or CI step that ran it.
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS are lists of JVM flags
    setsid nohup java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS \
        -Dkafka.logs.dir="$KAFKA_LOGS" \
        -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.xml" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
        >>"$KAFKA_LOGS/kafka.out" 2>&1 </dev/null 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$KAFKA_PID"

    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while :; do
        kill -0 "$pid" 2>/dev/null || kafka_fail_start "$pid" "the broker exited during startup (log tails above)"
        if port_open "$KAFKA_PORT" && [[ -f $log_file ]] &&
            tail -c +"$((offset + 1))" "$log_file" | grep -q 'Kafka Server started'; then
            break
        fi
        ((SECONDS >= deadline)) && kafka_fail_start "$pid" \
            "not ready after ${KAFKA_START_TIMEOUT}s (port open and 'Kafka Server started' in the log); stopped it"
        sleep 0.5
    done
    log kafka "ready: bootstrap.servers=127.0.0.1:$KAFKA_PORT (pid $pid)"
}

kafka_stop() {
    if ! pid_alive "$KAFKA_PID" kafka.Kafka; then
        rm -f "$KAFKA_PID"
        log kafka "not running"
        return 0
    fi
    local pid
    pid=$(<"$KAFKA_PID")
    # SIGTERM runs the controlled shutdown (flushes logs, writes the clean-shutdown marker).
    kill -TERM "$pid"
    if ! wait_pid_gone "$pid" 60; then
        log kafka "pid $pid still alive after 60 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 10 || die kafka "pid $pid survived SIGKILL"
    fi
    rm -f "$KAFKA_PID"
    log kafka "stopped"
}

kafka_status() {
    if pid_alive "$KAFKA_PID" kafka.Kafka && port_open "$KAFKA_PORT"; then
        log kafka "up on 127.0.0.1:$KAFKA_PORT (pid $(<"$KAFKA_PID"))"
        return 0
    fi
    log kafka "down"
    return 3
}

# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------
usage() {
    printf 'usage: %s <postgres|redis|kafka|all> <install|start|stop|status>\n' "$0" >&2
    exit 2
}

run_one() { # run_one <service> <action>
    local fn
    case $1 in
    postgres) fn=pg ;;
    redis) fn=redis ;;
    kafka) fn=kafka ;;
    *) usage ;;
    esac
    "${fn}_$2"
}

main() {
    (($# == 2)) || usage
    local service=$1 action=$2 services
    case $action in install | start | stop | status) ;; *) usage ;; esac
    case $service in
    all)
        # Stop in reverse order: the broker's clients (none here) before their stores.
        if [[ $action == stop ]]; then services=(kafka redis postgres); else services=(postgres redis kafka); fi
        ;;
    postgres | redis | kafka) services=("$service") ;;
    *) usage ;;
    esac

    if [[ $action != status ]]; then
        # Several engineers and CI share one RUN_DIR: serialise changes, never status. Daemons are
        # started with fd 9 closed so the lock is released when this script exits.
        exec 9>"$RUN_DIR/.services.lock"
        flock -w 300 9 || die services "another services.sh holds $RUN_DIR/.services.lock for 300 s"
    fi

    local s rc=0
    for s in "${services[@]}"; do
        if [[ $action == status ]]; then
            run_one "$s" status || rc=3
        else
            run_one "$s" "$action"
        fi
    done
    return "$rc"
}

main "$@"
