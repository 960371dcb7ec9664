#!/usr/bin/env bash
# The test command (README, `make test`, .ci/run): installs what the tests
# need, checks formatting, vets, lints, and runs every test with the race
# detector, end-to-end suites against real components included.
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
echo "== go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
