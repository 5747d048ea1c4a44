#!/usr/bin/env bash
# Builds the pinned developer tools (grpcurl, buf, protoc plugins) into .bin/, once.
# Idempotent: a tool already built at its pinned version is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.bin"
mkdir -p "$BIN"

tools=(
  "grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.3"
  "buf github.com/bufbuild/buf/cmd/buf v1.75.0"
  "protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go v1.36.11"
  "protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.0"
)
for t in "${tools[@]}"; do
  read -r name pkg version <<<"$t"
  stamp="$BIN/.$name.version"
  if [[ -x "$BIN/$name" && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
    continue
  fi
  echo "install-tools: building $name $version" >&2
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$pkg@$version"
  echo "$version" >"$stamp"
done
