# trustmesh — run `make help` for the targets.
#
# Tools (buf, protoc plugins, grpcurl, ghz, grpc-health-probe, staticcheck,
# benchstat) are pinned in tools/go.mod and run with `go tool`; nothing is
# downloaded from anywhere but the Go module proxy.

SHELL      := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO         ?= go
TOOL       := $(GO) tool -modfile=tools/go.mod
CERT_DIR   ?= certs/dev
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X github.com/trustmesh/trustmesh/internal/version.Version=$(VERSION)
# grpcnotrace: grpc-go leaves out golang.org/x/net/trace (its /debug/requests
# pages, off unless grpc.EnableTracing), whose text/template keeps every
# exported method alive: shop is 7 MB smaller and each service 3 MiB
# smaller in memory (BENCHMARKS.md, "Idle memory per service").
BUILD_TAGS ?= grpcnotrace

.PHONY: help
help: ## show the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## run the sample mesh on loopback (gateway :8443), creating certs/dev first if missing
	@mkdir -p bin
	$(GO) build -tags '$(BUILD_TAGS)' -ldflags '$(LDFLAGS)' -o bin/shop ./cmd/shop
	bin/shop up --cert-dir $(CERT_DIR)

.PHONY: certs
certs: ## create the development PKI under certs/dev (keeps an existing CA)
	$(GO) run ./cmd/meshctl certs init --dir $(CERT_DIR)

.PHONY: tools
tools: ## build the pinned tools once (cached by the go command)
	@for t in buf protoc-gen-go protoc-gen-go-grpc protoc-gen-connect-go grpcurl grpc-health-probe ghz staticcheck benchstat; do \
		$(TOOL) -n $$t >/dev/null; done

.PHONY: generate
generate: ## regenerate gen/ from proto/ with buf (local plugins), and the sample's descriptor set for meshctl --sample
	$(TOOL) buf generate
	$(GO) test -count=1 -run '^TestSampleProtoDescriptors$$' ./services/shop -update

.PHONY: check-generated
check-generated: ## fail if gen/ (the root's and each example's) is not what `buf generate` produces, or an exported access.proto or the vendored validate.proto is stale
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(TOOL) buf generate -o "$$tmp"; \
	if ! diff -r gen "$$tmp/gen" >/dev/null; then \
		diff -r gen "$$tmp/gen" | head -n 20 || true; \
		echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; \
	fi; echo "gen/ is fresh"; \
	for ex in $(EXAMPLES); do \
		out="$$tmp/$$ex"; mkdir -p "$$out"; \
		(cd $$ex && $(EXAMPLE_TOOL) buf generate -o "$$out"); \
		if [ -d $$ex/third_party ]; then (cd $$ex && $(GO) tool meshctl proto export "$$out/third_party" >/dev/null); fi; \
		for d in gen third_party; do \
			[ -d $$ex/$$d ] || continue; \
			if ! diff -r $$ex/$$d "$$out/$$d" >/dev/null; then \
				diff -r $$ex/$$d "$$out/$$d" | head -n 20 || true; \
				echo "$$ex/$$d is stale: run 'make generate-examples' and commit the result" >&2; exit 1; \
			fi; \
		done; echo "$$ex/gen is fresh"; \
	done
	@cd tools && $(GO) test -count=1 ./protovalidateproto >/dev/null || { \
		cd tools && $(GO) test -count=1 ./protovalidateproto; exit 1; }
	@echo "proto/buf/validate/validate.proto is the published protovalidate schema"

# The standalone example modules (own go.mod, proto and gen/; see examples/).
EXAMPLES     := examples/grpc examples/connect examples/workloadapi
EXAMPLE_TOOL := $(GO) tool -modfile=$(CURDIR)/tools/go.mod

.PHONY: generate-examples
generate-examples: ## regenerate each example's gen/ (and third_party/trustmesh, exported by meshctl)
	@for ex in $(EXAMPLES); do \
		echo "generate-examples: $$ex"; \
		if [ -d $$ex/third_party ]; then (cd $$ex && $(GO) tool meshctl proto export third_party); fi; \
		(cd $$ex && $(EXAMPLE_TOOL) buf generate); \
	done

.PHONY: test-examples
test-examples: ## each example module: buf lint, go vet, staticcheck, go test -race
	@failed=""; for ex in $(EXAMPLES); do \
		echo "test-examples: $$ex"; \
		(cd $$ex && $(EXAMPLE_TOOL) buf lint && $(GO) vet ./... && \
			$(EXAMPLE_TOOL) staticcheck ./... && $(GO) test -race -count=1 ./...) || failed="$$failed $$ex"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-examples: FAILED:$$failed" >&2; exit 1; fi

# proto/buf/validate/validate.proto is protovalidate's schema, which our protos
# import for their buf.validate rules. The Buf Schema Registry is out of reach,
# so it is printed from the descriptor embedded in the published Go package
# (buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go, pinned in
# tools/go.mod at the version go.mod uses); buf generates no Go code for it.
.PHONY: protovalidate-proto
protovalidate-proto: ## rewrite proto/buf/validate/validate.proto from the pinned protovalidate Go package (after upgrading it)
	@tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; \
	(cd tools && $(GO) run ./protovalidateproto) > "$$tmp"; \
	mv "$$tmp" proto/buf/validate/validate.proto; trap - EXIT
	@echo "wrote proto/buf/validate/validate.proto"

# Wire compatibility of proto/: `buf breaking` against a committed image of
# the last released protos. A change that breaks clients of the protos (a
# field renumbered or retyped, a method removed, ...) fails `make test` with
# buf's message; make such a change deliberately with a new package version
# (shop.gateway.v2 beside v1), or, if no one depends on the old one yet,
# refresh the baseline with `make proto-baseline` in the same commit.
BASELINE   := proto/baseline.binpb

.PHONY: breaking
breaking: breaking-selftest ## fail if proto/ breaks wire compatibility with the committed baseline (proto/baseline.binpb)
	$(TOOL) buf breaking --against $(BASELINE)
	@echo "breaking: proto/ is compatible with $(BASELINE)"

.PHONY: breaking-selftest
breaking-selftest: ## prove that `make breaking` fails on a field renumbered in a copy of proto/
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -r buf.yaml proto "$$tmp"/; \
	sed -i 's/int64 units_minor = 2;/int64 units_minor = 3;/' "$$tmp/proto/shop/money/v1/money.proto"; \
	if out=$$($(TOOL) buf breaking "$$tmp" --against $(BASELINE) 2>&1); then \
		echo "breaking-selftest: buf breaking accepted shop.money.v1.Money.units_minor renumbered from 2 to 3" >&2; exit 1; fi; \
	if ! grep -q 'Previously present field "2" with name "units_minor" on message "Money" was deleted' <<<"$$out"; then \
		echo "breaking-selftest: buf breaking failed, but not on the renumbered field:" >&2; echo "$$out" >&2; exit 1; fi
	@echo "breaking-selftest: a renumbered field fails buf breaking"

.PHONY: proto-baseline
proto-baseline: ## refresh proto/baseline.binpb from proto/ (deliberately: it accepts every change made since)
	$(TOOL) buf build --exclude-source-info -o $(BASELINE)
	@echo "wrote $(BASELINE): commit it with the proto change it accepts"

.PHONY: lint
lint: ## buf lint, gofmt, go vet, staticcheck
	$(TOOL) buf lint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/') 2>/dev/null || true); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags load ./services/shop
	$(TOOL) staticcheck ./...

.PHONY: policy-test
policy-test: ## the sample policy's expected decisions (services/policy_test.yaml) with meshctl policy test
	$(GO) run ./cmd/meshctl policy test --sample services/policy.yaml services/policy_test.yaml

.PHONY: test
test: tools check-generated lint breaking policy-test bench-check test-modules test-examples ## everything CI checks: generated code, lint, buf breaking, the sample policy's cases, benchmarks compile, the examples, go test -race
	$(GO) test -race -count=1 ./...

## Containers ---------------------------------------------------------------

COMPOSE    ?= docker compose
BIN_DIR    := bin
IMAGE      ?= trustmesh:$(VERSION)
# Containers run as you (so that certs/dev stays yours), or as 65532 when
# you are root: the mesh never runs as root in its containers.
SHOP_UID   ?= $(if $(filter 0,$(shell id -u)),65532,$(shell id -u))
SHOP_GID   ?= $(if $(filter 0,$(shell id -u)),65532,$(shell id -g))
COMPOSE_ENV = SHOP_UID=$(SHOP_UID) SHOP_GID=$(SHOP_GID) TRUSTMESH_VERSION=$(VERSION)

.PHONY: build
build: ## static binaries bin/shop and bin/meshctl (CGO_ENABLED=0, -trimpath, -tags grpcnotrace, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(BUILD_TAGS)' -ldflags '-s -w $(LDFLAGS)' -o $(BIN_DIR)/ ./cmd/shop ./cmd/meshctl

.PHONY: image
image: build ## the container image (FROM scratch: shop + meshctl), tagged $(IMAGE)
	DOCKER_BUILDKIT=$${DOCKER_BUILDKIT:-0} docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

.PHONY: compose-certs-dir
compose-certs-dir:
	@mkdir -p $(CERT_DIR)
	@if [ "$$(id -u)" = 0 ]; then chown -R $(SHOP_UID):$(SHOP_GID) $(CERT_DIR); fi

.PHONY: up
up: build compose-certs-dir ## the mesh in containers (docker compose), gateway on 127.0.0.1:8443, traces in `make logs`
	$(COMPOSE_ENV) $(COMPOSE) up -d --build
	@echo "up: the gateway is on localhost:8443 (grpcurl with certs/dev/alice.pem, see README); traces: $(COMPOSE) logs -f traces"

.PHONY: up-jaeger
up-jaeger: build compose-certs-dir ## as `up`, with traces sent to Jaeger (UI on http://localhost:16686; pulls its image)
	$(COMPOSE_ENV) OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317 $(COMPOSE) --profile jaeger up -d --build
	@echo "up-jaeger: Jaeger UI on http://localhost:16686"

.PHONY: down
down: ## stop and remove the containers and network (certs/dev stays)
	$(COMPOSE_ENV) $(COMPOSE) --profile jaeger down --remove-orphans

.PHONY: logs
logs: ## follow the containers' logs (`$(COMPOSE) logs -f traces` for the trace trees only)
	$(COMPOSE_ENV) $(COMPOSE) logs -f

.PHONY: k8s-policy
k8s-policy: ## regenerate deploy/kubernetes/policy-configmap.yaml from services/policy.yaml (its test fails when stale)
	@{ echo '# Generated from services/policy.yaml by `make k8s-policy`: do not edit.'; \
	  echo 'apiVersion: v1'; echo 'kind: ConfigMap'; echo 'metadata:'; echo '  name: shop-policy'; \
	  echo '  namespace: shop'; echo '  labels:'; echo '    app.kubernetes.io/part-of: trustmesh'; \
	  echo 'data:'; echo '  policy.yaml: |'; sed -e 's/^/    /' -e 's/^ *$$//' services/policy.yaml; \
	} > deploy/kubernetes/policy-configmap.yaml
	@echo "wrote deploy/kubernetes/policy-configmap.yaml"

.PHONY: test-modules
test-modules: build ## the tests kept in their own modules: compose.yaml cross-check, Kubernetes manifests
	cd test/compose && $(GO) vet ./... && TRUSTMESH_BIN=$(CURDIR)/$(BIN_DIR) $(GO) test -count=1 ./...
	cd deploy/kubernetes && $(GO) vet ./... && $(GO) test -count=1 ./...

.PHONY: test-compose
test-compose: build ## the slow tier: the mesh under real docker compose, end to end (sets up an engine if none)
	@start=$$(date +%s); trap 'echo "test-compose: wall time $$(( $$(date +%s) - start ))s"' EXIT; \
	engine=$$(.ci/compose-engine.sh); eval "$$engine"; \
	cd test/compose && TRUSTMESH_BIN=$(CURDIR)/$(BIN_DIR) $(GO) test -tags compose -count=1 -timeout 15m -v -run '^TestCompose$$' .

.PHONY: test-load
test-load: ## the load tier: ghz through the full mesh, 100k calls each of ListProducts and PlaceOrder, rotations and reloads under load
	@start=$$(date +%s); \
	$(GO) test -tags load -run '^TestLoad' -count=1 -v -timeout 20m ./services/shop; \
	echo "test-load: wall time $$(( $$(date +%s) - start ))s"

.PHONY: bench
bench: ## run the benchmarks, compared side by side with benchstat (see BENCHMARKS.md)
	cd bench && $(GO) test -run '^$$' -bench . -benchmem -count 6 . | tee ../bench.out
	$(TOOL) benchstat -col /impl bench.out

# `make bench-mesh MESHBENCH_FLAGS='-rounds 5 -godebug adaptivestackstart=0'`
# passes flags to bench/meshbench (`go run ./meshbench -h` in bench/ lists
# them; -configs STACK/shop and placeorder/* for the sample's `shop serve`
# against bare and PlaceOrder end to end, see BENCHMARKS.md). Bounded: at
# most 15 minutes (-timeout), 3 rounds of 20,000 calls per configuration by
# default (about 3 minutes on 2 vCPUs).
MESHBENCH_FLAGS ?=

.PHONY: bench-mesh
bench-mesh: ## server CPU and allocations per call, and latency at concurrency 1, of bare grpc-go / connect-go and trustmesh (telemetry off / unsampled / always-on; shop serve; PlaceOrder end to end), each server in its own process (see BENCHMARKS.md)
	@mkdir -p bin
	cd bench && $(GO) build -tags '$(BUILD_TAGS)' -o ../bin/meshbench ./meshbench
	bin/meshbench $(MESHBENCH_FLAGS)

.PHONY: bench-rss
bench-rss: ## idle resident memory of each service in its own process
	bench/idle-rss.sh

.PHONY: bench-check
bench-check: ## compile and run each benchmark once, and the meshbench harness for a few calls (the bench module has its own go.mod)
	cd bench && $(GO) vet ./... && $(GO) test -run '^$$' -bench . -benchtime 1x . >/dev/null && $(GO) test -count=1 ./meshbench

.PHONY: test-interop
test-interop: ## the interop tier: Python grpcio, Node grpc-js and connect-node, grpcurl against the mesh over mTLS (installs them: apt-get, npm ci)
	@start=$$(date +%s); rc=0; \
	test/interop/setup.sh || rc=$$?; \
	if [ $$rc = 0 ]; then \
		$(GO) vet -tags interop ./test/interop && \
		$(GO) test -tags interop -count=1 -v -timeout 10m -run '^TestInterop$$' ./test/interop || rc=$$?; fi; \
	echo "test-interop: wall time $$(( $$(date +%s) - start ))s"; exit $$rc

# SPIRE v1.13.3 is pinned in its own modules, so that the main go.mod stays
# lean: spire-server in tools/spire/go.mod (with cloudsql-proxy v1.38.4, which
# pulls a grpc whose go-spiffe the agent does not compile with) and
# spire-agent in tools/spire/agent/go.mod (SPIRE's own dependency versions).
# `make spire` builds both once into .cache/spire/bin (git-ignored) and
# rebuilds one only when its go.mod changes.
SPIRE_BIN  := $(CURDIR)/.cache/spire/bin

.PHONY: spire
spire: $(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent ## build spire-server and spire-agent v1.13.3 (tools/spire) once into .cache/spire/bin

$(SPIRE_BIN)/spire-server: tools/spire/go.mod tools/spire/go.sum
	@echo "spire: building spire-server into $(SPIRE_BIN) (several minutes the first time)"
	cd tools/spire && $(GO) build -o $@ github.com/spiffe/spire/cmd/spire-server
	@touch $@

$(SPIRE_BIN)/spire-agent: tools/spire/agent/go.mod tools/spire/agent/go.sum
	@echo "spire: building spire-agent into $(SPIRE_BIN) (a few minutes the first time)"
	cd tools/spire/agent && $(GO) build -o $@ github.com/spiffe/spire/cmd/spire-agent
	@touch $@

.PHONY: run-spire
run-spire: spire ## run the sample mesh on identities from a local SPIRE server and agent (see README "Running on SPIRE")
	@mkdir -p bin
	$(GO) build -tags '$(BUILD_TAGS)' -ldflags '$(LDFLAGS)' -o bin/shop ./cmd/shop
	bin/shop up --spire --spire-bin $(SPIRE_BIN)

.PHONY: test-spire
test-spire: ## the SPIRE integration tier: the mesh on a real SPIRE server and agent (fails if SPIRE cannot be built)
	@start=$$(date +%s); \
	if ! $(MAKE) --no-print-directory spire; then \
		echo "test-spire: FAILED: the SPIRE binaries could not be built (see above); the tier did not run" >&2; exit 1; fi; \
	rc=0; TRUSTMESH_SPIRE_BIN=$(SPIRE_BIN) $(GO) test -tags spire -race -count=1 -timeout 10m -v -run '^TestSPIRE' ./internal/spire/... || rc=$$?; \
	echo "test-spire: wall time $$(( $$(date +%s) - start ))s"; exit $$rc
