#!/usr/bin/env bash
# Installs what Guardian's tests need, idempotently: Debian's prometheus and
# prometheus-alertmanager (real components for the end-to-end tests) and
# staticcheck (cached in .cache/bin). Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "deps: need root (or sudo) to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  # The packages' post-install scripts try to start services; there is no
  # init system here, and the tests start their own instances anyway.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

mkdir -p .cache/bin
if [ ! -x .cache/bin/staticcheck ] || [ "$(cat .cache/bin/staticcheck.version 2>/dev/null)" != "$STATICCHECK_VERSION" ]; then
  echo "deps: building staticcheck $STATICCHECK_VERSION"
  GOBIN="$PWD/.cache/bin" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
  echo "$STATICCHECK_VERSION" > .cache/bin/staticcheck.version
fi
