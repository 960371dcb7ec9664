#!/usr/bin/env bash
# Builds, once, the real Kubernetes control plane that Guardian's Kubernetes
# tests run against (testenv.StartKubernetes), from the Go module proxy only:
#
#   etcd                      go.etcd.io/etcd/server/v3      (ETCD_VERSION)
#   kube-apiserver,           k8s.io/kubernetes              (KUBERNETES_VERSION,
#   kube-controller-manager,                                  staging modules at
#   kube-scheduler, kubectl                                   the matching v0.x)
#   kwok (+ its stage files)  sigs.k8s.io/kwok/cmd/kwok      (KWOK_VERSION)
#   helm                      helm.sh/helm/v3/cmd/helm       (HELM_VERSION)
#
# into .cache/k8s/<versions>/bin, and points .cache/k8s/current at it. A
# version-keyed stamp per component skips work already done, so running it
# again costs nothing. A copy is also kept in a machine-wide cache
# (${GUARDIAN_K8S_SHARED_CACHE:-$HOME/.cache/guardian/k8s}; set it to "off"
# to disable) so that a fresh clone on the same machine (CI) reuses it.
#
# Usage: scripts/k8s.sh [build|path|versions|clean]
#   build     build what is missing (default)
#   path      print the bin directory (build first)
#   versions  print the cache key
#   clean     remove this checkout's .cache/k8s
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ETCD_VERSION=v3.6.16
KUBERNETES_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
# RECIPE changes whenever the way the binaries are built changes, so that a
# new recipe does not reuse binaries built the old way.
RECIPE=1

KEY="kubernetes-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${RECIPE}"
CACHE="$ROOT/.cache/k8s"
DIR="$CACHE/$KEY"
BIN="$DIR/bin"
SHARED_BASE="${GUARDIAN_K8S_SHARED_CACHE:-$HOME/.cache/guardian/k8s}"

log() { echo "k8s: $*"; }
# shellcheck source=progress.sh
. "$ROOT/scripts/progress.sh"

# Go settings for the scratch modules only: resolve their dependencies freely
# (-mod=mod), ignore any go.work, and build static binaries. GOFLAGS from the
# caller (e.g. -mod=vendor for Guardian itself) must not leak in.
# The go command's parallelism follows GOMAXPROCS (default: all cores).
GO_SCRATCH=(env GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0)
GO_INSTALL=(env GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0)

# timed NAME CMD...: runs CMD, then prints how long it took and, when GNU
# time is installed, the CPU time it used and the peak resident memory of its
# largest process.
timed() {
  local name=$1; shift
  local start=$SECONDS rss=""
  if [ -x /usr/bin/time ]; then
    local tf; tf=$(mktemp)
    if ! with_heartbeat k8s "$name" /usr/bin/time -f '%U %S %M' -o "$tf" "$@"; then
      rm -f "$tf"
      log "$name FAILED after $((SECONDS - start))s"
      return 1
    fi
    rss=$(tail -n1 "$tf" | awk '{printf ", %.0f CPU-s, largest process %d MiB", $1 + $2, $3 / 1024}')
    rm -f "$tf"
  else
    with_heartbeat k8s "$name" "$@" || { log "$name FAILED after $((SECONDS - start))s"; return 1; }
  fi
  log "$name done in $((SECONDS - start))s$rss"
}

stamp() { echo "$DIR/stamps/$1"; }
have() { [ -f "$(stamp "$1")" ]; }
done_() { mkdir -p "$DIR/stamps"; date -u +%FT%TZ > "$(stamp "$1")"; }

build_etcd() {
  have etcd && return 0
  log "building etcd $ETCD_VERSION"
  local src="$DIR/src/etcd"
  mkdir -p "$src" "$BIN"
  cat > "$src/go.mod" <<EOF
module guardian.local/k8s-build/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  (cd "$src" && timed "etcd $ETCD_VERSION" "${GO_SCRATCH[@]}" go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  done_ etcd
}

build_kubernetes() {
  have kubernetes && return 0
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION (the long one: minutes)"
  local src="$DIR/src/kubernetes"
  mkdir -p "$src" "$BIN"
  # k8s.io/kubernetes replaces its staging modules with ./staging/src/...
  # paths, which do not exist in the module zip: point each at the published
  # module of the matching version instead (v1.37.2 -> v0.37.2).
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  local modfile
  modfile=$(cd / && "${GO_INSTALL[@]}" go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$modfile" ] || { log "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"; return 1; }
  {
    printf 'module guardian.local/k8s-build/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\n' "$KUBERNETES_VERSION"
    sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*#replace \1 => \1 '"$staging"'#p' "$modfile"
  } > "$src/go.mod"
  local major minor pkg ldflags=""
  major=${KUBERNETES_VERSION#v}; major=${major%%.*}
  minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}
  # Without these the binaries report v0.0.0 and kubectl/helm cannot parse
  # the server version.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$src" && timed "kubernetes $KUBERNETES_VERSION" "${GO_SCRATCH[@]}" go build -ldflags "-s -w$ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
  done_ kubernetes
}

build_kwok() {
  have kwok && return 0
  log "building kwok $KWOK_VERSION"
  mkdir -p "$BIN"
  # go install pkg@version builds with kwok's own go.mod, as its authors do.
  timed "kwok $KWOK_VERSION" "${GO_INSTALL[@]}" GOBIN="$BIN" \
    go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The stage files (node-initialize, node-heartbeat-with-lease, pod-ready,
  # pod-complete, pod-delete) tell kwok how fake nodes and pods progress.
  local moddir
  moddir=$(cd / && "${GO_INSTALL[@]}" go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$DIR/stages"; mkdir -p "$DIR/stages"
  cp "$moddir"/kustomize/stage/node/fast/node-initialize.yaml \
     "$moddir"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
     "$moddir"/kustomize/stage/pod/fast/pod-ready.yaml \
     "$moddir"/kustomize/stage/pod/fast/pod-complete.yaml \
     "$moddir"/kustomize/stage/pod/fast/pod-delete.yaml "$DIR/stages/"
  chmod 0644 "$DIR"/stages/*.yaml
  done_ kwok
}

build_helm() {
  have helm && return 0
  log "building helm $HELM_VERSION"
  mkdir -p "$BIN"
  # helm's Makefile sets these; the Kubernetes version is the client-go
  # minor that helm v3.22 is built against (v0.37).
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37"
  timed "helm $HELM_VERSION" "${GO_INSTALL[@]}" GOBIN="$BIN" \
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  done_ helm
}

complete() { have etcd && have kubernetes && have kwok && have helm && [ -f "$DIR/stamp" ]; }

restore_shared() {
  [ "$SHARED_BASE" = off ] && return 0
  local shared="$SHARED_BASE/$KEY"
  [ -f "$shared/stamp" ] || return 0
  log "reusing $shared"
  rm -rf "$DIR"; mkdir -p "$CACHE"
  # Hard links when on the same file system, a copy otherwise.
  cp -al "$shared" "$DIR" 2>/dev/null || { rm -rf "$DIR"; cp -a "$shared" "$DIR"; }
}

save_shared() {
  [ "$SHARED_BASE" = off ] && return 0
  local shared="$SHARED_BASE/$KEY"
  [ -f "$shared/stamp" ] && return 0
  mkdir -p "$SHARED_BASE"
  rm -rf "$shared.tmp"
  mkdir -p "$shared.tmp"
  cp -a "$BIN" "$DIR/stages" "$DIR/stamps" "$DIR/stamp" "$shared.tmp/" 2>/dev/null || { rm -rf "$shared.tmp"; return 0; }
  rm -rf "$shared"; mv "$shared.tmp" "$shared"
}

build() {
  if ! complete; then
    restore_shared
  fi
  if complete; then
    ln -sfn "$KEY" "$CACHE/current"
    save_shared
    return 0
  fi
  local start=$SECONDS
  log "building the test control plane into $DIR (cached once built)"
  build_etcd
  build_kwok
  build_helm
  build_kubernetes
  echo "$KEY" > "$DIR/stamp"
  ln -sfn "$KEY" "$CACHE/current"
  save_shared
  log "all built in $((SECONDS - start))s: $(ls "$BIN" | tr '\n' ' ')"
}

case "${1:-build}" in
  build) build ;;
  path) echo "$BIN" ;;
  versions) echo "$KEY" ;;
  clean) rm -rf "$CACHE" ;;
  *) echo "usage: $0 [build|path|versions|clean]" >&2; exit 2 ;;
esac
