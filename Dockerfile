# syntax=docker/dockerfile:1
# One Dockerfile for every doraflow service:
#   docker build --build-arg SERVICE=enricher --build-arg VERSION=v0.1.0 -t ghcr.io/doraflow/enricher:v0.1.0 .
# The result is a static binary on a distroless, non-root base: no shell, no package manager.

ARG GO_VERSION=1.26.11

FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE
ARG VERSION=dev
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
# Module files first, so dependency downloads are cached across source changes.
COPY go.work go.work.sum ./
COPY pkg/events/go.mod pkg/events/
COPY internal/go.mod internal/go.sum internal/
COPY services/argocd-watcher/go.mod services/argocd-watcher/go.sum services/argocd-watcher/
COPY services/webrca-poller/go.mod services/webrca-poller/go.sum services/webrca-poller/
COPY services/enricher/go.mod services/enricher/go.sum services/enricher/
COPY services/devlake-sink/go.mod services/devlake-sink/go.sum services/devlake-sink/
COPY services/metrics-exporter/go.mod services/metrics-exporter/go.sum services/metrics-exporter/
COPY test/e2e/go.mod test/e2e/go.sum test/e2e/
RUN --mount=type=cache,target=/root/go/pkg/mod cd services/${SERVICE:?set --build-arg SERVICE} && go mod download
COPY pkg/ pkg/
COPY internal/ internal/
COPY services/ services/
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/service ./services/${SERVICE}

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
ARG VERSION=dev
LABEL org.opencontainers.image.source="https://github.com/doraflow/doraflow" \
      org.opencontainers.image.title="doraflow ${SERVICE}" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/service /doraflow-service
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/doraflow-service"]
