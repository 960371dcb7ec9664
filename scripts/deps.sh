#!/usr/bin/env bash
# Installs what Guardian's tests need, idempotently: Debian's prometheus and
# prometheus-alertmanager (real components for the end-to-end tests),
# chromium (the browser tests drive it headless), staticcheck (cached in .cache/bin) and the real Kubernetes control plane
# (scripts/k8s.sh, cached in .cache/k8s). Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
# The console's and the status page's browser tests; fonts so that the
# screenshots have legible text.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core)
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

# The real Kubernetes control plane for the Kubernetes tests (etcd, kube-*,
# kwok, kubectl, helm), built from the Go module proxy and cached by version
# in .cache/k8s (minutes cold, nothing when cached; see
# docs/kubernetes-testing.md). GUARDIAN_SKIP_K8S=1 skips it on a laptop; the
# Kubernetes tests then skip too (and fail in CI).
if [ "${GUARDIAN_SKIP_K8S:-}" = 1 ] && [ -z "${CI:-}" ]; then
  echo "deps: GUARDIAN_SKIP_K8S=1: not building the Kubernetes test control plane"
else
  scripts/k8s.sh build
fi
