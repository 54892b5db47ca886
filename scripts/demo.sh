#!/usr/bin/env bash
# The mtuf story on one machine: a maintainer publishes the measurements of
# an image through TUF, with the in-toto links that prove they are exactly
# what the reading step produced; a user fetches and verifies them, then
# verifies three simulated nodes, one of which booted a modified kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

build_binaries
BIN=$PWD/bin
# The simulated nodes and the reading step need the TPM simulator build.
SIMBIN=$PWD/bin/sim
BOOT=$PWD/testdata/boot
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mtuf-demo.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cd "$WORK"
# Demo keys only; a real deployment keeps root and targets keys offline.
export MTUF_PASSWORD=demo-password

step "Security team: keys for each role"
for k in root targets ci online owner; do run "$BIN/mtuf" keys generate --type ed25519 --out "$k"; done

step "Maintainer: a TUF repository"
run "$BIN/mtuf" repo init --workspace ws --storage "file://$WORK/repo" \
	--root-key root.key --targets-key targets.key --measurements-key ci.key \
	--snapshot-key online.key --timestamp-key online.key

step "Layout owner: the in-toto supply chain (read-measurements, then publish, by the CI key)"
# The layout is a target of the top-level targets role, signed offline:
# the online CI key cannot change whose measurements clients trust.
run "$BIN/mtuf" repo layout --workspace ws --owner-key owner.key --targets-key targets.key \
	--owner-key-out owner.intoto.pub

step "Three nodes boot: node-1 and node-2 the release image, node-3 a modified kernel"
start_agent() {
	"$SIMBIN/mtuf-agent" --listen 127.0.0.1:0 --tpm sim --boot-log "$2" \
		--ready-file "$1.addr" --ak-pub-out "$1-ak.pem" 2>"$1.log" &
	PIDS+=($!)
}
start_agent node-1 "$BOOT/image-v1.0.0.yaml"
start_agent node-2 "$BOOT/image-v1.0.0.yaml"
start_agent node-3 "$BOOT/image-v1.0.0-modified-kernel.yaml"
for n in node-1 node-2 node-3; do wait_file "$n.addr"; echo "$n: mtuf-agent on $(cat "$n.addr")"; done

step "CI: read the reference measurements of the release image from a TPM, recording an in-toto link"
run "$SIMBIN/pcr-reader" --tpm sim --boot-log "$BOOT/image-v1.0.0.yaml" \
	--image v1.0.0 --platform qemu-vtpm --out measurements.json --link-key ci.key

step "Maintainer: publish them with their links as signed TUF targets, verified against the layout first"
run "$BIN/mtuf" repo publish --workspace ws --measurements measurements.json --image v1.0.0 --platform qemu-vtpm \
	--link read-measurements.*.link --link-key ci.key
run "$BIN/mtuf" repo status --workspace ws

if command -v in-toto-verify >/dev/null; then
	step "Anyone: in-toto's reference verifier accepts the layout and links as the repository serves them"
	mkdir intoto
	for f in repo/targets/supplychain/*.root.layout repo/targets/measurements/v1.0.0/qemu-vtpm/*.link; do
		b=$(basename "$f")
		cp "$f" "intoto/${b#*.}" # stored as <sha256>.<name>
	done
	cd intoto
	echo '$ in-toto-verify -v -l root.layout -k owner.intoto.pub -t ed25519'
	in-toto-verify -v -l root.layout -k ../owner.intoto.pub -t ed25519 2>&1 | tail -n 1
	cd ..
fi

step "Serve the repository over HTTP"
"$BIN/mtuf" repo serve --storage "file://$WORK/repo" --addr 127.0.0.1:0 --ready-file repo.addr >serve.log 2>&1 &
PIDS+=($!)
wait_file repo.addr
REPO_URL="http://$(cat repo.addr)"
echo "repository at $REPO_URL"

step "User: trust the repository's root once, then update through TUF and in-toto"
run "$BIN/mtuf" client init --state client --repo "$REPO_URL" --root repo/metadata/1.root.json
run "$BIN/mtuf" client update --state client --image v1.0.0 --platform qemu-vtpm

step "User: verify the cluster"
set +e
run "$BIN/mtuf" client verify --state client \
	--node "$(cat node-1.addr)" --node "$(cat node-2.addr)" --node "$(cat node-3.addr)" \
	--trusted-ak node-1-ak.pem --trusted-ak node-2-ak.pem --trusted-ak node-3-ak.pem
status=$?
set -e
echo
if [ "$status" = 1 ]; then
	echo "mtuf client verify exited 1: node-3 is refused, as it should be."
else
	echo "unexpected exit status $status from mtuf client verify" >&2
	exit 1
fi
