#!/usr/bin/env bash
# Fails if the committed generated code differs from what buf generates now.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.bin:$PATH"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
buf generate -o "$tmp"
if ! diff -r <(cd "$tmp/proto" && find . -name '*.go' | sort | xargs cat) <(cd proto && find . -name '*.go' | sort | xargs cat) >/dev/null; then
  echo "proto-check: generated code is stale; run 'make proto' and commit" >&2
  diff -r "$tmp/proto" proto --exclude='*.proto' | head -40 >&2
  exit 1
fi
echo "proto-check: generated code is up to date"
