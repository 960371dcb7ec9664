# syntax=docker/dockerfile:1
#
# Guardian's container image: a static binary on distroless, run as the
# non-root user 65532. Build it with
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t guardian .
#
# and run it with a config file mounted at /etc/guardian/config.yaml (the Helm
# chart in deploy/helm/guardian mounts its ConfigMap elsewhere and passes
# --config.file itself). The base image carries CA certificates, the IANA time zone
# database (for global.postmortem.time_zone) and /etc/passwd with "nonroot".
#
# TAGS are Go build tags. The slim image for sidecars leaves out everything
# that talks to the Kubernetes API (the kubernetes, argo_rollouts and helm
# executors, deploy.kubernetes, global.cluster; about a third of the full
# image's size and less than half its memory); a configuration that uses
# them is rejected with the field and line:
#
#   docker build --build-arg TAGS=nokubernetes -t guardian:slim .
#
# TAGS=nohelm leaves out only the helm executor (the Helm SDK).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG TAGS=""
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -tags "${TAGS}" -ldflags "-s -w -X main.version=${VERSION}" -o /out/guardian ./cmd/guardian
# The default working directory holds state_dir (./data by default), so it
# must be writable by the non-root user.
RUN mkdir -p /out/state/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/guardian /guardian
COPY --from=build --chown=65532:65532 /out/state /var/lib/guardian
WORKDIR /var/lib/guardian
USER 65532:65532
EXPOSE 9095
ENTRYPOINT ["/guardian"]
CMD ["run", "--config.file", "/etc/guardian/config.yaml"]
