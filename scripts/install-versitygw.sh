#!/usr/bin/env bash
# Installs versitygw, the S3-compatible server that the object storage tests
# run on loopback, into .tools/bin (or $MTUF_TOOLS_BIN). The build takes a
# few minutes, so an existing binary is kept; pass -f to rebuild it.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v1.8.0
BIN=${MTUF_TOOLS_BIN:-$PWD/.tools/bin}

if [ "${1:-}" != "-f" ] && [ -x "$BIN/versitygw" ]; then
	exit 0
fi
mkdir -p "$BIN"
echo "building versitygw $VERSION into $BIN"
GOBIN=$BIN go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
