#!/usr/bin/env bash
# `make demo`: builds bin/guardian, saying what it does while it compiles
# (the first build downloads and compiles a few hundred modules' packages,
# which takes minutes), then runs `bin/guardian demo` with the arguments
# given. A build that fails prints the compiler's errors and exits non-zero.
#
# Environment: GO (default go), LDFLAGS (passed to go build), and
# DEMO_PROGRESS_EVERY, the seconds between progress lines (default 10).
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
LDFLAGS=${LDFLAGS:-}
every=${DEMO_PROGRESS_EVERY:-10}

work=$(mktemp -d "${TMPDIR:-/tmp}/guardian-demo-build.XXXXXX")
build_pid=
list_pid=
cleanup() {
  [ -n "$build_pid" ] && kill "$build_pid" 2>/dev/null
  [ -n "$list_pid" ] && kill "$list_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
elapsed() { echo $((SECONDS - start)); }

# go build -v names each package as it compiles it, on stderr, between the
# compiler's own messages (not the link).
"$GO" build -v -ldflags "$LDFLAGS" -o bin/guardian ./cmd/guardian 2>"$work/build.log" &
build_pid=$!

# compiled: how many packages the build has compiled so far. A package line
# is an import path alone: no spaces, no colon (compiler messages have both).
compiled() { grep -cE '^[^[:space:]:#]+$' "$work/build.log"; }
downloaded() { grep -c '^go: downloading ' "$work/build.log"; }
total() {
  if [ -z "$list_pid" ] && [ -s "$work/stale" ]; then
    wc -l <"$work/stale" | tr -d ' '
  fi
}

announced=0
last=0
while kill -0 "$build_pid" 2>/dev/null; do
  sleep 0.5
  if [ -n "$list_pid" ] && ! kill -0 "$list_pid" 2>/dev/null; then
    wait "$list_pid" 2>/dev/null
    list_pid=
  fi
  now=$(elapsed)
  # Announced once the build is seen to compile or download, after a few
  # seconds: a rebuild with nothing to do prints one line, even when slow.
  if [ "$announced" = 0 ] && { [ "$now" -ge 10 ] || { [ "$now" -ge 3 ] && [ "$(compiled)$(downloaded)" != 00 ]; }; }; then
    echo "demo: building bin/guardian. The first build downloads and compiles Go modules and takes several minutes" \
      "(8 to 20 on 2 CPUs, with the machine idle or busy); later builds take seconds. Progress every ${every} s:"
    announced=1
    last=$now
    # A long build: go list names the packages not in the build cache,
    # roughly what the build has to compile, the denominator. (Not at
    # once: it would slow down a quick rebuild.)
    "$GO" list -deps -f '{{if .Stale}}{{.ImportPath}}{{end}}' ./cmd/guardian >"$work/stale" 2>/dev/null &
    list_pid=$!
  elif [ "$announced" = 1 ] && [ $((now - last)) -ge "$every" ]; then
    n=$(compiled)
    tot=$(total)
    if [ "$n" = 0 ] && [ "$(downloaded)" != 0 ]; then
      echo "demo: building guardian: downloading modules, $(downloaded) so far, ${now} s"
    elif [ -n "$tot" ]; then
      [ "$n" -gt "$tot" ] && tot=$n # the estimate can fall short by a package or two
      echo "demo: building guardian: ${n}/${tot} packages, ${now} s"
    else
      echo "demo: building guardian: ${n} packages compiled, ${now} s"
    fi
    last=$now
  fi
done
wait "$build_pid"
status=$?
build_pid=

if [ "$status" != 0 ]; then
  # Everything but the package names: the compiler's (or go's) errors.
  grep -vE '^[^[:space:]:#]+$' "$work/build.log" | grep -v '^go: downloading ' >&2
  echo "demo: building bin/guardian failed after $(elapsed) s" >&2
  exit "$status"
fi
n=$(compiled)
case $n in
0) echo "demo: bin/guardian ready in $(elapsed) s (nothing to compile)" ;;
1) echo "demo: built bin/guardian in $(elapsed) s (1 package compiled)" ;;
*) echo "demo: built bin/guardian in $(elapsed) s ($n packages compiled)" ;;
esac
trap - EXIT INT TERM
cleanup
exec bin/guardian demo "$@"
