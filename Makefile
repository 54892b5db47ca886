# mtuf build, test, demo and benchmark entry points.
#
#   make build   the release binaries (no TPM simulator; see build-sim)
#   make install the release binaries into $(PREFIX)/bin (default ~/.local/bin)
#   make release ROOT=FILE REPO=URL VERSION=vX.Y.Z
#                bin/mtuf trusting that repository on first use
#   make demo    the whole story on this machine, with simulated TPMs
#   make demo-vm the story on real measured boots (QEMU, OVMF, swtpm)
#   make test    everything the tests need, then every test
#   make bench   benchmarks with baselines
#   make fuzz    every fuzz target for FUZZTIME each (default 30s)
#   make lint    gofmt, go mod tidy, go vet, staticcheck, client builds for darwin and windows

GO            ?= go
TOOLS         := $(CURDIR)/.tools/bin
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
COSIGN        := github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
# versitygw: the S3-compatible server the object storage tests run against.
VERSITYGW     := github.com/versity/versitygw/cmd/versitygw@v1.8.0
# local-kms: the AWS KMS emulator the tests of online keys in a KMS run against.
LOCALKMS      := github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6
# Debian packages the tests use as real peers: swtpm and tpm2-tools
# (a TCP TPM and the reference PCR reader), in-toto 1.3.1 (the reference
# supply chain tools), systemd (systemd-analyze verify checks the units of
# docs/deploy.md), and what pcr-precalc's tests check against: systemd-boot-efi
# (the UKI stub, systemd-measure), pesign (Authenticode), mtools, dosfstools
# and binutils (ESP images and UKIs built in the tests), jq and curl (the
# commands of docs/verify-release.md, run by the docs test).
APT_PACKAGES  := swtpm swtpm-tools tpm2-tools softhsm2 in-toto systemd systemd-boot-efi pesign mtools dosfstools binutils jq curl time
# What the measured-boot tests and make demo-vm boot images with: QEMU and
# OVMF (the image tools are above). The Debian kernel they boot is
# downloaded with apt-get download and cached.
VM_APT_PACKAGES := qemu-system-x86 ovmf
# -shuffle=on runs tests and benchmarks in a random order, so that a test that
# depends on another's leftovers fails; go test prints the seed ("-test.shuffle
# N") so that a failing order can be replayed with -shuffle=N.
#
# golang.org/x/crypto is built without the race detector's instrumentation:
# its scrypt, which every unlock of an encrypted key runs, takes 1 s
# instrumented against 0.2 s without, and the tests unlock keys many
# times. mtuf's own code stays instrumented, so a race between two of its
# goroutines is still caught; one whose other side is inside x/crypto is not.
GOTEST_FLAGS  ?= -race -gcflags=golang.org/x/crypto/...=-race=false -count=1 -shuffle=on -timeout 45m
# The TPM simulator (go-tpm-tools, C through cgo) is only in builds with
# this tag: tests, demos and bin/sim/. Release builds of mtuf-agent and
# pcr-reader leave it out, so that a node's agent only quotes with a real TPM.
SIM_TAGS      := -tags simulator

export MTUF_TOOLS_BIN := $(TOOLS)
export PATH := $(TOOLS):$(PATH)

# Where make install puts the binaries: $(PREFIX)/bin. The default needs no
# root; PREFIX=/usr/local installs for every user.
PREFIX        ?= $(HOME)/.local

.PHONY: all build build-sim install release test test-deps tools apt demo demo-vm bench fuzz lint clean

all: build

# The release version compiled into mtuf, for --version and self-update.
VERSION       ?= $(shell git describe --tags --match 'v*' 2>/dev/null || echo dev)

build:
	@mkdir -p bin
	$(GO) build -ldflags "-X github.com/mtuf/mtuf/internal/mtufcmd.Version=$(VERSION)" -o bin/mtuf ./cmd/mtuf
	$(GO) build -o bin/mtuf-agent ./cmd/mtuf-agent
	$(GO) build -o bin/pcr-reader ./tools/pcr-reader
	$(GO) build -o bin/pcr-precalc ./tools/pcr-precalc
	$(GO) build -o bin/tuf-conformance-client ./tools/tuf-conformance-client

install: build
	@mkdir -p $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/mtuf bin/mtuf-agent bin/pcr-reader bin/pcr-precalc bin/tuf-conformance-client $(DESTDIR)$(PREFIX)/bin/

# The CLI a project hands its users: the repository's initial root and URL
# compiled in, checked before the binary is kept (scripts/release.sh).
# GOOS and GOARCH build it for another platform.
release:
	ROOT="$(ROOT)" REPO="$(REPO)" VERSION="$(VERSION)" GO="$(GO)" ./scripts/release.sh

# mtuf-agent and pcr-reader with the TPM simulator (--tpm sim), for demos.
build-sim:
	@mkdir -p bin/sim
	$(GO) build $(SIM_TAGS) -o bin/sim/mtuf-agent ./cmd/mtuf-agent
	$(GO) build $(SIM_TAGS) -o bin/sim/pcr-reader ./tools/pcr-reader

test: test-deps
	$(GO) vet $(SIM_TAGS) ./...
	$(GO) test $(SIM_TAGS) $(GOTEST_FLAGS) ./...

test-deps: apt tools

# Debian packages, installed when running as root (as CI does). Without
# root, tests that need them skip, unless CI=true, where they fail.
apt:
	@missing=""; for p in $(APT_PACKAGES) $(VM_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "not root: skipping apt-get install of$$missing (tests that need them will skip)"; \
	fi

# Go tools at pinned versions, in a tools directory of the project.
tools: $(TOOLS)/cosign $(TOOLS)/staticcheck $(TOOLS)/versitygw $(TOOLS)/local-kms

$(TOOLS)/cosign:
	GOBIN=$(TOOLS) $(GO) install $(COSIGN)

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install $(STATICCHECK)

$(TOOLS)/versitygw:
	GOBIN=$(TOOLS) $(GO) install $(VERSITYGW)

$(TOOLS)/local-kms:
	GOBIN=$(TOOLS) $(GO) install $(LOCALKMS)

demo:
	./scripts/demo.sh

# The story on a real measured boot: images built from Debian packages,
# booted under QEMU with OVMF and a swtpm vTPM.
demo-vm: apt
	./scripts/demo-vm.sh

bench: test-deps
	./scripts/bench.sh

# The seed corpora run in make test; this explores beyond them.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

lint: $(TOOLS)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod or go.sum is not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	$(GO) vet $(SIM_TAGS) ./...
	CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/mtuf-agent
	$(TOOLS)/staticcheck ./...
	@# The client side (the mtuf CLI and the packages it embeds) also runs on
	@# macOS and Windows; the agent and pcr-reader are Linux tools.
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/mtuf ./client/...
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/mtuf ./client/...

clean:
	rm -rf bin
