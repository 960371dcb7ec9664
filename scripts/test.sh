#!/usr/bin/env bash
# The test command (README, `make test`, .ci/run): installs what the tests
# need, checks formatting, vets, lints, checks the slim builds, and runs
# every test with the race detector, end-to-end suites against real
# components included, then fuzzes every fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
# step announces a step with the time elapsed since the start.
step() { echo "== $* (at $(( $(date +%s) - t0 ))s)"; }
# shellcheck source=progress.sh
. scripts/progress.sh

scripts/deps.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi
step "go vet"
go vet ./...
step "staticcheck"
.cache/bin/staticcheck ./...
step "slim builds (-tags nokubernetes, -tags nohelm)"
# They compile, lint clean (nokubernetes selects every file a slim build
# has), and reject what they leave out (TestSlimBuild).
for tags in nokubernetes nohelm; do
  go build -tags "$tags" ./...
done
go vet -tags nokubernetes ./...
.cache/bin/staticcheck -tags nokubernetes ./...
go test -count=1 -tags nokubernetes ./config/ ./plugin/
# The commands whose behaviour a slim build changes (check, version), and
# the demo and the daemon's signals to show the slim binary works end to
# end; the other commands are the same code as the full build's.
go test -count=1 -tags nokubernetes -run '^(TestSlimBuild|TestCheck.*|TestVersionAndFlags|TestDemo|TestDaemonSIGHUPAndSIGTERM)$' ./cmd/guardian/
go test -count=1 -tags nohelm -run TestSlimBuild ./config/ ./cmd/guardian/
go test -count=1 -tags nohelm ./plugin/
step "go test -race"
# -parallel is how many end-to-end tests (the only ones that call
# t.Parallel) run at once: they mostly wait on wall-clock steps, not the CPU.
# go test prints a package's result when it ends; the heartbeat says the
# step is alive meanwhile (the end-to-end package takes minutes).
with_heartbeat test "go test -race" go test -race -count=1 -parallel 6 -timeout 25m "$@" ./...

# Every fuzz target for a short fixed budget (FUZZTIME, default 6s), on top
# of its committed seed corpus, which the run above already replays. A
# failure leaves the input under the package's testdata/fuzz for a
# regression test; docs/reliability.md lists the targets.
fuzztime="${FUZZTIME:-6s}"
fuzz() {
  local pkg=$1; shift
  for target in "$@"; do
    step "fuzz $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
}
fuzz ./query FuzzRender FuzzCheck
fuzz ./config FuzzParse
fuzz ./web FuzzTokens FuzzAPIBodies
fuzz ./sign FuzzVerify
fuzz ./notify/slack FuzzInteraction FuzzParseCommand
# bbolt reading a damaged file can ask for memory without bound: cap it.
(ulimit -v 8000000; fuzz ./store/bolt FuzzOpen)
