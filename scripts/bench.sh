#!/usr/bin/env bash
# Runs every benchmark once over a fixed number of iterations and prints
# the comparison tables that docs/performance.md quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench.out}
go test -tags simulator -run '^$' -bench "${BENCH:-.}" -benchmem -benchtime "${BENCHTIME:-10x}" -timeout 60m ./... | tee "$out"
echo
awk -f scripts/benchtable.awk "$out"
