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

.PHONY: help
help: ## show the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## run the sample mesh on loopback (gateway :8443), creating certs/dev first if missing
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/shop up --cert-dir $(CERT_DIR)

.PHONY: certs
certs: ## create the development PKI under certs/dev (keeps an existing CA)
	$(GO) run ./cmd/meshctl certs init --dir $(CERT_DIR)

.PHONY: tools
tools: ## build the pinned tools once (cached by the go command)
	@for t in buf protoc-gen-go protoc-gen-go-grpc protoc-gen-connect-go grpcurl grpc-health-probe staticcheck; do \
		$(TOOL) -n $$t >/dev/null; done

.PHONY: generate
generate: ## regenerate gen/ from proto/ with buf (local plugins)
	$(TOOL) buf generate

.PHONY: check-generated
check-generated: ## fail if gen/ is not what `buf generate` produces from proto/
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(TOOL) buf generate -o "$$tmp"; \
	if ! diff -r gen "$$tmp/gen" >/dev/null; then \
		diff -r gen "$$tmp/gen" | head -n 20; \
		echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; \
	fi; echo "gen/ is fresh"

.PHONY: lint
lint: ## buf lint, gofmt, go vet, staticcheck
	$(TOOL) buf lint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/') 2>/dev/null || true); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(TOOL) staticcheck ./...

.PHONY: test
test: tools check-generated lint bench-check ## everything CI checks: generated code, lint, benchmarks compile, go test -race
	$(GO) test -race -count=1 ./...

.PHONY: bench
bench: ## run the benchmarks, compared side by side with benchstat (see BENCHMARKS.md)
	cd bench && $(GO) test -run '^$$' -bench . -benchmem -count 6 . | tee ../bench.out
	$(TOOL) benchstat -col /impl bench.out

.PHONY: bench-check
bench-check: ## compile and run each benchmark once (the bench module has its own go.mod)
	cd bench && $(GO) vet ./... && $(GO) test -run '^$$' -bench . -benchtime 1x . >/dev/null
