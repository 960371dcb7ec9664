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

# Every fuzz target for a fixed number of executions (about six seconds
# each on a 2-CPU machine), on top of its committed seed corpus, which the
# run above already replays. The budget is a count, not a duration: with a
# duration, Go's fuzz coordinator can report its own deadline as a failure
# ("context deadline exceeded") when a loaded machine's worker is mid-call as
# the time runs out; a count has no deadline to race. FUZZTIME overrides every
# budget (e.g. FUZZTIME=60s for a longer local hunt). A failure leaves the
# input under the package's testdata/fuzz for a regression test;
# docs/reliability.md lists the targets.
fuzz() {
  local pkg=$1; shift
  local spec target budget
  for spec in "$@"; do
    target=${spec%%:*}
    budget=${FUZZTIME:-${spec#*:}x}
    step "fuzz $pkg $target ($budget)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" -timeout 10m "$pkg"
  done
}
fuzz ./query FuzzRender:6000 FuzzCheck:20000
fuzz ./config FuzzParse:3000
fuzz ./web FuzzTokens:3000 FuzzAPIBodies:6000
fuzz ./sign FuzzVerify:60000
fuzz ./notify/slack FuzzInteraction:8000 FuzzParseCommand:12000
# bbolt reading a damaged file can ask for memory without bound: cap it.
(ulimit -v 8000000; fuzz ./store/bolt FuzzOpen:4000)
