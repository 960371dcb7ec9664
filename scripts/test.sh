#!/usr/bin/env bash
# The test command (README, `make test`, .ci/run): installs what the tests
# need, checks formatting, vets, lints, checks the slim builds, and runs
# every test with the race detector, end-to-end suites against real
# components included.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
.cache/bin/staticcheck ./...
echo "== slim builds (-tags nokubernetes, -tags nohelm)"
# They compile, lint clean (nokubernetes selects every file a slim build
# has), and reject what they leave out (TestSlimBuild).
for tags in nokubernetes nohelm; do
  go build -tags "$tags" ./...
done
go vet -tags nokubernetes ./...
.cache/bin/staticcheck -tags nokubernetes ./...
go test -count=1 -tags nokubernetes ./config/ ./cmd/guardian/ ./plugin/
go test -count=1 -tags nohelm -run TestSlimBuild ./config/ ./cmd/guardian/
go test -count=1 -tags nohelm ./plugin/
echo "== go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
