# Sourced by the project's scripts: with_heartbeat runs a long command and,
# while it runs, prints a line every HEARTBEAT_SECONDS (default 30) saying
# it is still at work and for how long, so that nobody waits in silence.
#
#   with_heartbeat PREFIX WHAT CMD...
#
# prints "PREFIX: WHAT: still running, 90s so far" and returns CMD's status.
with_heartbeat() {
  local prefix=$1 what=$2; shift 2
  local start=$SECONDS every=${HEARTBEAT_SECONDS:-30}
  (
    while sleep "$every"; do
      echo "$prefix: $what: still running, $((SECONDS - start))s so far"
    done
  ) &
  local beat=$! status=0
  "$@" || status=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  return "$status"
}
