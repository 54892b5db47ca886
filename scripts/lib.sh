# Helpers of the demo, sourced by scripts/demo.sh (and its test,
# scripts/scripts_test.go).

# Step titles are bold on a terminal only, and never with NO_COLOR set
# (https://no-color.org): a log file or a pipe gets no escape codes.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
	BOLD=$'\033[1m' RESET=$'\033[0m'
else
	BOLD='' RESET=''
fi

step() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$RESET"; }
run() { printf '$ %s\n' "$*"; "$@"; }
wait_file() {
	for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done
	echo "timed out waiting for $1" >&2; return 1
}

# build_binaries says what it builds before the build, which is silent and
# takes minutes when nothing is cached yet.
build_binaries() {
	echo "building bin/mtuf, bin/mtuf-agent, bin/pcr-reader and, with the TPM simulator, bin/sim/ (a first build takes a few minutes)"
	make -s build build-sim
	echo "built"
}
