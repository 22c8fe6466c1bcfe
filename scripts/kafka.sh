#!/usr/bin/env bash
# A real Apache Kafka broker for the integration tests: KRaft single node on 127.0.0.1, jars
# from Maven Central (scripts/kafka/pom.xml), storage formatted here, topics created up front.
#
#   scripts/kafka.sh start     fetch jars if needed, format, start, wait, create topics
#   scripts/kafka.sh stop
#   scripts/kafka.sh env       print EOD_KAFKA_BROKERS=... for the tests
#
# EOD_KAFKA_DIR (default .eod/kafka), EOD_KAFKA_PORT (default 19092; the controller uses +1),
# EOD_KAFKA_LIB (default $EOD_KAFKA_DIR/lib: brokers of one machine may share their jars).
# A second listener on port +2 speaks SASL_SSL (PLAIN, user `eod`) with a certificate from a
# CA made here: $EOD_KAFKA_DIR/tls holds ca.pem, sasl-username and sasl-password for clients.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/pidfile.sh
. "$root/scripts/lib/pidfile.sh"
dir="${EOD_KAFKA_DIR:-$root/.eod/kafka}"
port="${EOD_KAFKA_PORT:-19092}"
controller=$((port + 1))
lib="${EOD_KAFKA_LIB:-$dir/lib}"
props="$dir/server.properties"
pidfile="$dir/kafka.pid"
secure=$((port + 2))
brokers="127.0.0.1:$port"
tls="$dir/tls"

# The broker's JVM as Kafka's own kafka-server-start.sh and kafka-run-class.sh set it: a fixed
# 1 GiB heap and G1 aiming at 20 ms pauses. With the JVM's defaults instead (a heap grown from
# 256 MiB, 200 ms pauses) the broker paused for young collections 111 times in twelve 8 s runs
# at 50k msg/s, 1.31 s in all, against 32 times and 0.45 s (bench/RESULTS.md, 2026-12-07).
broker_jvm="-Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"

java_cp() { java -Xms64m -Xmx768m -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$lib/*" "$@"; }

fetch() {
  [ -f "$lib/.complete" ] && return
  command -v mvn >/dev/null || { echo "kafka: Maven (mvn) is required" >&2; exit 1; }
  mkdir -p "$lib"
  echo "kafka: fetching broker jars from Maven Central"
  if ! mvn -B -q --no-transfer-progress -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$lib" -DincludeScope=runtime >"$dir/maven.log" 2>&1; then
    tail -30 "$dir/maven.log" >&2
    echo "kafka: fetching jars failed (log: $dir/maven.log)" >&2
    exit 1
  fi
  touch "$lib/.complete"
}

# The broker's certificate (scripts/tls-certs.sh) in a PKCS12 keystore, and the SASL user.
certificates() {
  [ -f "$tls/broker.p12" ] && return
  "$root/scripts/tls-certs.sh" "$tls"
  openssl rand -hex 16 >"$tls/keystore-password"
  openssl pkcs12 -export -in "$tls/server.pem" -inkey "$tls/server.key" -name broker \
    -passout "file:$tls/keystore-password" -out "$tls/broker.p12"
  echo eod >"$tls/sasl-username"
  openssl rand -hex 16 >"$tls/sasl-password"
}

configure() {
  mkdir -p "$dir/data"
  certificates
  local store_password sasl_password
  store_password="$(cat "$tls/keystore-password")"
  sasl_password="$(cat "$tls/sasl-password")"
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller,SASL_SSL://127.0.0.1:$secure
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$secure
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_eod="$sasl_password";
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
log.dirs=$dir/data
num.partitions=12
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  cat >"$dir/log4j2.properties" <<LOG
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d %p %c{1} %m%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
LOG
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 120); do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    running || { echo "kafka: broker exited; see $dir/broker.out" >&2; tail -20 "$dir/broker.out" >&2; exit 1; }
    sleep 0.5
  done
  echo "kafka: broker did not open $brokers in 60 s" >&2; exit 1
}

# Kafka's command-line tools log through SLF4J 1.x; their noise goes to tools.log.
create_topic() {
  java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --create --if-not-exists \
    --topic "$1" --partitions "$2" --replication-factor 1 >>"$dir/tools.log" 2>&1
}

case "${1:-start}" in
  start)
    if running; then echo "EOD_KAFKA_BROKERS=$brokers"; echo "EOD_KAFKA_TLS_BROKERS=127.0.0.1:$secure"; exit 0; fi
    fetch
    configure
    if [ ! -f "$dir/data/meta.properties" ]; then
      cluster="$(java_cp kafka.tools.StorageTool random-uuid 2>>"$dir/tools.log" | tail -1)"
      java_cp kafka.tools.StorageTool format -t "$cluster" -c "$props" >>"$dir/tools.log" 2>&1
    fi
    # shellcheck disable=SC2086
    nohup java $broker_jvm -Dlog4j2.configurationFile="$dir/log4j2.properties" \
      -cp "$lib/*" kafka.Kafka "$props" >"$dir/broker.out" 2>&1 &
    echo $! >"$pidfile"
    wait_port
    create_topic trades.raw 12
    create_topic trades.dlq 3
    create_topic prices 12
    echo "EOD_KAFKA_BROKERS=$brokers"
    echo "EOD_KAFKA_TLS_BROKERS=127.0.0.1:$secure"
    ;;
  stop) stop_pidfile "$pidfile" ;;
  env)
    echo "EOD_KAFKA_BROKERS=$brokers"
    echo "EOD_KAFKA_TLS_BROKERS=127.0.0.1:$secure"
    echo "EOD_KAFKA_TLS_DIR=$tls"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
