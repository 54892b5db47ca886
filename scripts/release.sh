#!/usr/bin/env bash
# Builds a release of the mtuf CLI that trusts the project's repository on
# first use: the exact bytes of its initial root metadata and its URL are
# compiled in, with the release version (see internal/mtufcmd/embedded.go
# and binversion.go). Before the build is kept, a binary with the same
# flags for this machine runs 'mtuf client init' with no flags, and the
# root it trusted must be byte for byte the ROOT file: a root that does not
# parse or is not signed by its own keys fails the build.
#
#   ROOT=repo/metadata/1.root.json REPO=https://example.com/repo VERSION=v1.2.0 \
#       [OUT=bin/mtuf] [GOOS=linux GOARCH=arm64] scripts/release.sh
#
# -trimpath is not used: under it go build leaves the -ldflags out of the
# binary's build information, where 'mtuf repo publish --cli-binary' reads
# the version.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ROOT:?ROOT=FILE names the repository initial root metadata, such as repo/metadata/1.root.json}"
: "${REPO:?REPO=URL names the repository the release trusts, such as https://example.com/repo}"
: "${VERSION:?VERSION=vMAJOR.MINOR.PATCH names the release}"
OUT=${OUT:-bin/mtuf}
GO=${GO:-go}
if ! [[ $VERSION =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]]; then
	echo "release: VERSION=$VERSION is not a release version vMAJOR.MINOR.PATCH" >&2
	exit 2
fi
if [[ $REPO == *[\'\"[:space:]]* ]]; then
	echo "release: REPO=$REPO holds a quote or a space" >&2
	exit 2
fi
if ! [ -f "$ROOT" ]; then
	echo "release: ROOT=$ROOT is not a file" >&2
	exit 2
fi
pkg=github.com/mtuf/mtuf/internal/mtufcmd
root=$(base64 <"$ROOT" | tr -d '\n')
ldflags="-X $pkg.Version=$VERSION -X $pkg.embeddedRoot=$root -X '$pkg.embeddedRepo=$REPO'"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
host_os=$($GO env GOHOSTOS) host_arch=$($GO env GOHOSTARCH)
target_os=${GOOS:-$host_os} target_arch=${GOARCH:-$host_arch}
check=$tmp/mtuf
GOOS=$host_os GOARCH=$host_arch $GO build -ldflags "$ldflags" -o "$check" ./cmd/mtuf
if ! "$check" client init --state "$tmp/state" >"$tmp/init.out" 2>&1; then
	echo "release: the root in $ROOT or the URL $REPO is refused:" >&2
	cat "$tmp/init.out" >&2
	exit 1
fi
if ! cmp -s "$ROOT" "$tmp/state/tuf/root.json"; then
	echo "release: the root the built binary trusts differs from $ROOT" >&2
	exit 1
fi
mkdir -p "$(dirname "$OUT")"
if [ "$target_os/$target_arch" = "$host_os/$host_arch" ]; then
	mv "$check" "$OUT"
else
	GOOS=$target_os GOARCH=$target_arch $GO build -ldflags "$ldflags" -o "$OUT" ./cmd/mtuf
fi
echo "built $OUT: mtuf $VERSION for $target_os-$target_arch, repository $REPO"
sed -n 's/^/  /; 2,$p' "$tmp/init.out"
