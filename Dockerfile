# syntax=docker/dockerfile:1

# Build on the build machine's own platform and cross-compile: the binary is
# pure Go (CGO_ENABLED=0), so multi-arch images need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" \
      -o /out/mailgate ./cmd/mailgate

# Static binary, CA certificates and tzdata, no shell; runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mailgate /mailgate
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/mailgate"]
CMD ["serve", "--config", "/etc/mailgate/config.yaml"]
