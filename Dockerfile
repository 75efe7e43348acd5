# syntax=docker/dockerfile:1
#
# One image for every role: the first argument picks it.
#
#   docker build -t p2sp .
#   docker run --rm p2sp tracker --data-dir /var/lib/p2sp/tracker
#   docker run --rm -v "$PWD/media:/srv/media:ro" -e P2SP_TOKEN=... p2sp origin --media /srv/media
#
# Ports (EXPOSE documents them; publish the ones the role uses):
#   7070/tcp  tracker HTTP: file info, /announce, /metrics, /healthz, /readyz
#   8080/tcp  origin HTTP:  /files, /metrics, /healthz, /readyz
#   8090/tcp  proxy HTTP:   /stream for players, /metrics, /healthz, /readyz
#             (the proxy binds 127.0.0.1 unless told --listen :8090)
#   6881/tcp  proxy BitTorrent (with --bt-listen :6881)
#
# Health: no HEALTHCHECK here. The runtime image has no shell and no HTTP
# client to run one with, and each role answers on its own port; the
# orchestrator probes instead: GET /healthz (alive) and GET /readyz (able to
# serve: the tracker's store open, the origin's first media scan done, the
# proxy's cache loaded and BitTorrent port listening). deploy/k8s wires
# both as Kubernetes probes.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# A static binary (no cgo): it runs on the distroless static base.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/p2sp ./cmd/p2sp \
 && mkdir -p /out/var/lib/p2sp /out/var/cache/p2sp

# distroless static: CA certificates, tzdata, /etc/passwd with the nonroot
# user (65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/p2sp /p2sp
# Writable homes for the tracker's registry and the proxy's cache, owned by
# the non-root user (mount volumes over them).
COPY --from=build --chown=65532:65532 /out/var/lib/p2sp /var/lib/p2sp
COPY --from=build --chown=65532:65532 /out/var/cache/p2sp /var/cache/p2sp
USER 65532:65532
EXPOSE 7070/tcp 8080/tcp 8090/tcp 6881/tcp
ENTRYPOINT ["/p2sp"]
CMD ["--help"]
