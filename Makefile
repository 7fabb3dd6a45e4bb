# enrollgate: `make run` starts the service with an embedded NATS server and
# its data in ./data; `make test` runs every test with the race detector.
GO        ?= go
FUZZTIME  ?= 5s
PKGS      := ./...
BENCHFLAGS ?=

.PHONY: run build test lint fmt-check vet fuzz bench faults clean

run:
	$(GO) run ./cmd/enrollgate serve

# The version `enrollgate version`, micro and /metrics report: a release tag,
# else the commit.
VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' || true)
VERSION   := $(or $(VERSION),0.0.0-dev+$(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown))

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/enrollgate ./cmd/enrollgate

test: fmt-check vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz

# staticcheck at a pinned version, built into bin/ (git-ignored) from the
# module proxy the first time.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/staticcheck-$(STATICCHECK_VERSION)

lint: fmt-check vet $(STATICCHECK)
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/staticcheck $@

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# A brief run of each fuzz target beyond its seed corpus (the seeds already ran
# in `go test`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./events/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) ./internal/verifywire/

# Service against raw JetStream in one run; e.g. make bench BENCHFLAGS=-quick.
# Writes bench-results.json; see docs/benchmarks.md.
bench:
	$(GO) run ./cmd/enrollgate-bench $(BENCHFLAGS)

# The fault suite on a real 3-node cluster with three replicas (see
# docs/faults.md); e.g. make faults FAULTSFLAGS=-scenarios=stream-leader.
FAULTSFLAGS ?=
faults:
	$(GO) run ./cmd/enrollgate-faults $(FAULTSFLAGS)

clean:
	rm -rf bin
