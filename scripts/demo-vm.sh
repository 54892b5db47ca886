#!/usr/bin/env bash
# The mtuf story on a real measured boot: two small images are built from
# Debian packages (systemd's UKI stub, a Debian 6.1 kernel, an initramfs
# that runs mtuf-agent), booted under QEMU with OVMF and a swtpm vTPM, and
# attested. The release image's measurements are read through its agent
# and precalculated from the image itself by pcr-precalc, a second
# functionary; the layout demands that the two agree, the measurements are
# published with both in-toto links and trusted by a client, which then
# refuses the VM that booted the same kernel with another command line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

echo "building bin/mtuf, bin/pcr-reader, bin/pcr-precalc and bin/vmboot (a first build takes a few minutes)"
make -s build
BIN=$PWD/bin
go build -o "$BIN/vmboot" ./internal/vmtest/vmboot
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mtuf-demo-vm.XXXXXX")
PIDS=()
cleanup() {
	# vmboot stops its QEMU and swtpm when interrupted.
	for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A boot under TCG takes 15-20 s on two idle cores; much longer on a busy
# machine.
wait_boot() {
	for _ in $(seq 1 1200); do
		[ -s "$1.addr" ] && return 0
		if ! kill -0 "$2" 2>/dev/null; then echo "$1: vmboot exited:" >&2; cat "$1.log" >&2; return 1; fi
		sleep 0.5
	done
	echo "$1 did not boot within 10 minutes; last console lines:" >&2
	tail -n 20 "$1.vm/console.log" >&2
	return 1
}

cd "$WORK"
# Demo keys only; a real deployment keeps root and targets keys offline.
export MTUF_PASSWORD=demo-password

step "Build two images from Debian packages: the release, and the same kernel with another command line"
run "$BIN/vmboot" image --module "$ROOT" --out release
run "$BIN/vmboot" image --module "$ROOT" --out other --cmdline 'console=ttyS0 panic=-1 mtuf.demo=other-cmdline'

step "Boot both under QEMU (TCG) with OVMF and a swtpm vTPM"
start=$(date +%s)
for n in release other; do
	"$BIN/vmboot" run --timeout 10m --esp "$n/esp.img" --dir "$n.vm" --ready-file "$n.addr" \
		--ak-pub-out "$n-ak.pem" --event-log-out "$n.eventlog" >"$n.log" 2>&1 &
	PIDS+=($!)
	eval "pid_$n=$!"
done
wait_boot release "$pid_release"
wait_boot other "$pid_other"
echo "both booted in $(( $(date +%s) - start )) s: release on $(cat release.addr), other on $(cat other.addr)"
grep -h 'booted in' release.log other.log

step "Security team: keys for each role"
for k in root targets ci precalc owner; do run "$BIN/mtuf" keys generate --type ed25519 --out "$k"; done

step "Maintainer: a TUF repository and its in-toto layout"
run "$BIN/mtuf" repo init --workspace ws --storage "file://$WORK/repo" \
	--root-key root.key --targets-key targets.key --measurements-key ci.key \
	--snapshot-key ci.key --timestamp-key ci.key
run "$BIN/mtuf" repo layout --workspace ws --owner-key owner.key --targets-key targets.key \
	--precalc-functionary precalc.pub

step "CI: read the release VM's PCRs through its agent, recording an in-toto link"
mkdir read
run "$BIN/pcr-reader" --agent "http://$(cat release.addr)" --trusted-ak release-ak.pem \
	--image v1.0.0 --platform qemu-vtpm --out read/measurements.json --link-key ci.key

step "Second functionary: precalculate the PCRs from the image itself, and compare"
mkdir precalc
run "$BIN/pcr-precalc" --image release/esp.img --image-version v1.0.0 --platform qemu-vtpm \
	-o precalc/measurements.json --link-key precalc.key
run "$BIN/vmboot" compare precalc/measurements.json read/measurements.json

step "Maintainer: publish the measurements with the links of both functionaries"
run "$BIN/mtuf" repo publish --workspace ws --measurements read/measurements.json --image v1.0.0 \
	--platform qemu-vtpm --link read/read-measurements.*.link \
	--link precalc/precalculate-measurements.*.link --link-key ci.key

step "User: update through TUF and in-toto, then verify both VMs"
run "$BIN/mtuf" client init --state client --repo "file://$WORK/repo" --root repo/metadata/1.root.json
run "$BIN/mtuf" client update --state client --image v1.0.0 --platform qemu-vtpm
set +e
run "$BIN/mtuf" client verify --state client --node "$(cat release.addr)" --node "$(cat other.addr)" \
	--trusted-ak release-ak.pem --trusted-ak other-ak.pem --reference-log release.eventlog
status=$?
set -e
echo
if [ "$status" = 1 ]; then
	echo "mtuf client verify exited 1: the VM with another command line is refused, as it should be."
else
	echo "unexpected exit status $status from mtuf client verify" >&2
	exit 1
fi
