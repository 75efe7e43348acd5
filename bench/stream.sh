#!/usr/bin/env bash
# stream.sh builds the p2sp binary and runs the streaming benchmark
# (bench/stream) against it; extra arguments go to the benchmark, e.g. -quick.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/p2sp" ./cmd/p2sp
go run ./bench/stream -p2sp "$tmp/p2sp" "$@"
