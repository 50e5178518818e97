# syntax=docker/dockerfile:1
#
# keygate as a container: a static binary (the flags of `make build`) in a
# distroless image that has no shell and no package manager, running as an
# unprivileged user.
#
#   docker build -t keygate --build-arg VERSION="$(git describe --tags --always --dirty)" .
#   docker run -d --name keygate -p 9091:9091 \
#     -v keygate-data:/var/lib/keygate \
#     -v "$PWD/keygate.yaml:/etc/keygate/keygate.yaml:ro" \
#     -v "$PWD/storage.key:/etc/keygate/storage.key:ro" \
#     keygate
#
# In keygate.yaml: server.listen "0.0.0.0:9091" (the default 127.0.0.1 is
# unreachable from outside the container), storage.path /var/lib/keygate,
# storage.encryption_key_file /etc/keygate/storage.key (or pass
# KEYGATE_STORAGE_ENCRYPTION_KEY). The admin socket stays inside the data
# volume, so the CLI works with: docker exec keygate keygate user list.
# See docs/installation.md.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/keygate ./cmd/keygate
# distroless has no shell to create directories at run time: make the data
# directory here so that a fresh volume inherits the owner and mode 0700.
RUN install -d -m 0700 -o 65532 -g 65532 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keygate /usr/local/bin/keygate
COPY --from=build --chown=65532:65532 /out/data /var/lib/keygate
# nonroot = uid/gid 65532; numeric so that orchestrators can check runAsNonRoot.
USER 65532:65532
ENV KEYGATE_CONFIG=/etc/keygate/keygate.yaml
VOLUME ["/var/lib/keygate"]
EXPOSE 9091
# No HEALTHCHECK: the image has no HTTP client; point the orchestrator's
# probe at GET /.keygate/healthz.
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve"]
