# Sourced by the service scripts: the service a pid file names, stopped.
# stop_pidfile PIDFILE: TERM, up to 30 s for it to exit, then KILL; the pid file goes.
stop_pidfile() {
  local pidfile="$1" pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
