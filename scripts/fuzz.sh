#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME (default 30s), one after another, and
# stops at the first that fails. go test writes a failing input to the
# package's testdata/fuzz/<target>/, where it stays as a seed once fixed.
#
#   FUZZTIME=2m ./scripts/fuzz.sh              every target
#   FUZZ=FuzzParsePrivate ./scripts/fuzz.sh    the targets matching a regexp
#   FUZZPARALLEL=1 ./scripts/fuzz.sh           one fuzzing worker per target
#   FUZZMINIMIZE=10s ./scripts/fuzz.sh         minimize inputs longer (default 1000 runs)
set -euo pipefail
cd "$(dirname "$0")/.."

# Package and target, one per line. Every Fuzz function of the module is
# here: the list is checked against the source below.
targets="
./attest FuzzReplayEventLog
./attest FuzzParseAKRoots
./attest FuzzVerifyMutatedAttestation
./client FuzzNormalizeRepositoryURL
./client FuzzParseS3URL
./client FuzzFetchMetadata
./client FuzzAuditReader
./internal/agentapi FuzzFetchAttestation
./internal/agentapi FuzzParsePublicKeyPEM
./intoto FuzzInTotoLink
./intoto FuzzInTotoLayout
./intoto FuzzInTotoMetablocks
./intoto FuzzParsePublicKey
./keys FuzzParsePrivate
./keys FuzzParsePublic
./keys FuzzParsePublicKeys
./metadata FuzzParse
./metadata FuzzParseAll
./metadata FuzzParseProfile
./metadata FuzzParseCustom
./metadata FuzzParseTarget
./precalc FuzzUKI
./precalc FuzzLocate
./repo FuzzStorageURL
"

listed=$(awk 'NF == 2 {print $2}' <<<"$targets" | sort)
found=$(git grep -h -o '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's/^func //' | sort)
if [ "$listed" != "$found" ]; then
	echo "scripts/fuzz.sh lists other fuzz targets than the source has:" >&2
	diff <(echo "$listed") <(echo "$found") >&2 || true
	exit 1
fi

fuzztime=${FUZZTIME:-30s}
# The engine minimizes every input that finds new coverage, for 60 s by
# default and in time quadratic in the input's length: on inputs of
# hundreds of bytes fuzzing then stalls. A bound in runs keeps it fuzzing.
minimize=${FUZZMINIMIZE:-1000x}
parallel=()
if [ -n "${FUZZPARALLEL:-}" ]; then
	parallel=(-parallel "$FUZZPARALLEL")
fi
while read -r pkg target; do
	[ -n "$pkg" ] || continue
	[[ $target =~ ${FUZZ:-.} ]] || continue
	echo "== $pkg $target ($fuzztime)"
	# The simulator tag lets the attestation target boot a simulated TPM.
	go test -tags simulator -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "${parallel[@]}" "$pkg"
done <<<"$targets"
