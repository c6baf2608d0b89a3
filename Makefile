# hanat — Makefile. `make test` is what CI runs (via .ci/run); `make demo`
# runs the simulated VPC with a NAT pair (root).
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...
# Brief fuzzing in CI; run longer by hand: make fuzz FUZZTIME=5m
FUZZTIME ?= 10s
# Go minimizes a new input for up to 60 s by default, which ate the whole
# time-boxed run (FuzzFastpath ran ~5k execs in 20 s, ~48k with 2 s).
FUZZMINIMIZE ?= 2s
# package:FuzzTarget pairs
FUZZ_TARGETS := \
	./config:FuzzParse \
	./admin:FuzzDecodeReloadRequest \
	./conntrack:FuzzHandleDatagram \
	./conntrack:FuzzDecodeEvent \
	./conntrack:FuzzDecodeDatagram \
	./bpf:FuzzFastpath \
	./geneve:FuzzParse \
	./gwlb:FuzzIngress \
	./internal/vpcsim/gwlbsim:FuzzReturnAndForward \
	./internal/vpcsim/ec2sim:FuzzParseQuery \
	./internal/vpcsim/ec2sim:FuzzAutoScalingQuery \
	./ha:FuzzUnmarshal \
	./flowsync:FuzzDecodeFrame

.PHONY: all build deps test unit lint vet fmt generate check-generate fuzz bench demo clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hanatd ./cmd/hanatd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hanatctl ./cmd/hanatctl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hanat-lab ./cmd/hanat-lab

# The main job: the seed's VPC simulated on this machine (root) with the hanat
# HA pair and state sync; a download from app-a survives nat-a's crash and the
# failback, each step timed, the digest checked; then torn down (~35 s).
# DEMO_ARGS=--hold keeps it up until Ctrl-C; DEMO_ARGS=--sync=false shows the
# download dying without the state sync (the demo then fails); DEMO_ARGS=--gwlb
# is the fleet's story: three hanatd behind the lab's GWLB, one crashed, one drained.
demo: deps build
	$(BIN)/hanat-lab demo --hanatd $(BIN)/hanatd --hanatctl $(BIN)/hanatctl $(DEMO_ARGS)

# Host tools for test, demo and bench (clang, nftables, conntrack, iperf3,
# man-db…): one list in scripts/deps.sh, installed with apt-get when missing.
deps:
	@scripts/deps.sh

# Everything CI checks: formatting, vet, committed BPF objects current,
# all tests (root ones run in network namespaces the tests create), fuzzing.
test: deps lint check-generate
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) fuzz

# Unit tests only (no root needed; root-only tests skip themselves).
unit:
	$(GO) test -count=1 -short $(PKGS)

lint: fmt vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# Rebuild the BPF objects with clang (bpf2go).
generate:
	$(GO) generate ./bpf/... ./bench/

# Fails when the committed bpf2go output differs from a fresh build.
check-generate: generate
	@git diff --exit-code --stat -- bpf/ bench/ || { echo "bpf/, bench/: committed objects are stale; run 'make generate' and commit"; exit 1; }

# Go's fuzzer can end a time-boxed run with "context deadline exceeded"
# when the time runs out while a worker is busy (minimizing a new input);
# that is not a finding. A finding writes its input under testdata/fuzz
# and says "Failing input written to": that, or any other failure, fails.
fuzz:
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		if ! $(GO) test $$pkg -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) >$$out 2>&1; then \
			cat $$out; \
			if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written to' $$out; then \
				echo "fuzz $$pkg $$name: the fuzzer's own deadline, not a finding"; \
			else exit 1; fi; \
		else tail -n 2 $$out; fi; \
	done

# The benchmark (root, a few minutes; not part of `make test`): hanat's
# nftables slow path, the XDP fast path and an iptables-legacy MASQUERADE
# NAT side by side in namespaces it creates, hanatd's /metrics with many
# flows, and the HA state sync (full sync, inject at takeover, a
# connection storm with sync off and on). BENCH_JSON=path also writes
# the figures as JSON; BENCH_ARGS passes flags (hanat-bench -h), e.g.
# BENCH_ARGS=-sync-only for the state sync alone.
bench: deps build
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/hanat-bench ./bench/cmd/hanat-bench
	$(BIN)/hanat-bench -json "$(BENCH_JSON)" $(BENCH_ARGS)

clean:
	rm -rf $(BIN)

# .deb and .rpm for amd64 and arm64 in packaging/dist (nfpm as a Go tool;
# `make package VERSION=1.2.3` to set the version, ARCHES=arm64 for one).
.PHONY: package
package:
	GO=$(GO) packaging/package.sh packaging/dist
