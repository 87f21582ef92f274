# doraflow — thin Makefile. `./...` does not cross module boundaries, so targets loop over the
# workspace modules (go.work). Tools are built from pinned modules under tools/ by hack/tools.sh.

SHELL      := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
MODULES    := $(shell go list -m -f '{{.Dir}}')
SERVICES   := argocd-watcher webrca-poller enricher devlake-sink metrics-exporter
FUZZTIME   ?= 10s
GOTEST     ?= go test
TESTFLAGS  ?= -race -count=1 -shuffle=on -timeout=20m
export GOFLAGS ?= -buildvcs=false
# The Go toolchain every build, test and tool uses: a patch release with every standard-library fix
# that the pinned vulnerability database knows (ADR 0009); go downloads it from the module proxy once.
export GOTOOLCHAIN := go1.26.11

.PHONY: all build images test test-chaos test-short run demo bench fuzz golden lint vet vulncheck tidy check tools kube-assets clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## build bin/<service> for each service and bin/doraflow (the ops CLI), version stamped
	@mkdir -p bin
	@for s in $(SERVICES); do \
		echo "build bin/$$s ($(VERSION))"; \
		go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/$$s ./services/$$s; \
	done
	@echo "build bin/doraflow ($(VERSION))"
	@go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/doraflow ./cmd/doraflow

IMAGE_REPO ?= ghcr.io/doraflow
images: ## one image per service from the shared Dockerfile (needs a Docker engine)
	@for s in $(SERVICES); do \
		docker build --build-arg SERVICE=$$s --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO)/$$s:$(VERSION) . ; \
	done

# PROMETHEUS_SH finds (or installs, from the OS packages) Prometheus and promtool for the rule tests.
PROMETHEUS_SH ?= hack/prometheus.sh
test: ## every test in every module, with -race; builds (or reuses) kube-apiserver + etcd, finds Prometheus
	@assets=$${KUBEBUILDER_ASSETS:-$$(hack/tools.sh kube | tail -n 1)}; \
	prom=$${PROMETHEUS_BIN_DIR:-}; \
	if [[ -z $$prom ]] && ! prom=$$($(PROMETHEUS_SH) | tail -n 1); then \
		if [[ -n $${CI:-} ]]; then \
			echo "make test: no Prometheus (the reason is above); CI needs it: fix that or set PROMETHEUS_BIN_DIR" >&2; exit 1; \
		fi; \
		echo "make test: no Prometheus (the reason is above): the Prometheus tests will skip" >&2; prom=; \
	fi; \
	for m in $(MODULES); do \
		echo "=== $${m#$(CURDIR)/}"; \
		(cd $$m && KUBEBUILDER_ASSETS=$$assets PROMETHEUS_BIN_DIR=$$prom $(GOTEST) $(TESTFLAGS) ./...); \
	done

test-chaos: build ## the chaos run: 10,000 deployments and 1,000 incidents while NATS, services, DevLake and GitHub fail (4–6 min)
	@assets=$$(hack/tools.sh kube | tail -n 1); \
	cd test/e2e && KUBEBUILDER_ASSETS=$$assets DORAFLOW_CHAOS=1 go test -count=1 -timeout 30m -run TestChaosExactlyOnce -v . | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok)|chaos_test.go'

test-short: ## unit tests only (-short), for the inner loop
	@for m in $(MODULES); do (cd $$m && $(GOTEST) -short -count=1 ./...); done

demo: build ## the pipeline fed by a simulated world (real kube-apiserver, fake GitHub, WebRCA, DevLake), then its DORA table
	@bin/doraflow demo --kube-assets "$$(hack/tools.sh kube | tail -n 1)"

run: build ## the whole pipeline on an embedded NATS server at 127.0.0.1:4222 (Ctrl-C stops everything)
	@bin/doraflow local

bench: build ## bench/report.json (raw JetStream limit vs the pipeline: throughput, latency, GitHub calls, RSS), then every module's benchmarks
	@go run ./test/e2e/cmd/bench --bin bin --out bench/report.json
	@for m in $(MODULES); do \
		echo "=== $${m#$(CURDIR)/}"; \
		(cd $$m && go test -run '^$$' -bench . -benchmem ./...); \
	done

# FUZZTIME is a duration (10s) or an execution count (20000x). CI uses a count: with Go 1.26 a
# duration can fail a clean run with "context deadline exceeded" at its end (go.dev/issue/75804).
fuzz: ## each fuzz target in turn for FUZZTIME
	@for m in $(MODULES); do \
		for pkg in $$(cd $$m && go list ./...); do \
			dir=$$(cd $$m && go list -f '{{.Dir}}' $$pkg); \
			for target in $$(cd $$dir && go test -list '^Fuzz' . | grep '^Fuzz' || true); do \
				echo "=== fuzz $$pkg $$target ($(FUZZTIME))"; \
				(cd $$dir && go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -timeout 10m .); \
			done; \
		done; \
	done

golden: ## rerun golden tests with -update (only packages that declare the flag)
	@assets=$$(hack/tools.sh kube | tail -n 1); \
	for f in $$(grep -rl --include='*_test.go' 'flag.Bool("update"' pkg internal services test cmd); do \
		dir=$$(dirname $$f); echo "=== $$dir"; (cd $$dir && KUBEBUILDER_ASSETS=$$assets go test -count=1 -run . -update .); \
	done

vet: ## go vet every module
	@for m in $(MODULES); do (cd $$m && go vet ./...); done

lint: vet ## go vet and golangci-lint (depguard, staticcheck, revive, …) on every module
	@lint=$$(hack/tools.sh lint | tail -n 1); \
	for m in $(MODULES); do \
		echo "=== lint $${m#$(CURDIR)/}"; \
		(cd $$m && $$lint run --config $(CURDIR)/.golangci.yml ./...); \
	done

vulncheck: build ## govulncheck every binary against the pinned, offline Go vulnerability database; fails on any reachable finding
	@db=$$(hack/tools.sh vuln | tail -n 1); \
	for b in bin/*; do \
		echo "=== vulncheck $$b"; \
		.tools/bin/govulncheck -db "file://$$db" -mode binary "$$b"; \
	done

tidy: ## go mod tidy per module, then go work sync
	@for m in $(MODULES); do (cd $$m && GOWORK=off go mod tidy); done
	@go work sync

check: build ## --check-config on every deploy/<service>/config.yaml; build and check every kustomization
	@for s in $(SERVICES); do \
		bin/$$s --check-config deploy/$$s/config.yaml; \
	done
	@cd test/e2e && go test -count=1 -run 'TestKustomize' .

tools: ## build the pinned CLI tools (nats, nats-server, golangci-lint, govulncheck + DB, kube-apiserver, etcd) into .tools
	@hack/tools.sh nats
	@hack/tools.sh lint
	@hack/tools.sh vuln
	@hack/tools.sh kube

kube-assets: ## print the directory holding kube-apiserver + etcd (builds them once)
	@hack/tools.sh kube | tail -n 1

clean: ## remove build output (keeps the tool cache)
	rm -rf bin .run
