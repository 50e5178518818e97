# keygate — developer entry points. `make help` lists them.
GO       ?= go
BIN      := bin/keygate
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
DEMO_FLAGS ?=

.PHONY: help run build test tools lint bench fuzz clean

# Go-installable test servers `make test` fetches itself (a real SMTP
# server for the mail tests, Caddy for forward-auth), built once into
# bin/tools from the module proxy at pinned versions. System packages
# (Chromium, nginx, Tomcat, Kannel, PostgreSQL) are .ci/run's job or the
# README's one-line install.
TOOLS       := $(CURDIR)/bin/tools
MAILPIT_VERSION := v1.27.11
CADDY_VERSION   := v2.11.9

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

run: build ## start keygate on its embedded demo defaults (http://localhost:9091)
	./$(BIN) demo $(DEMO_FLAGS)

build: ## build the static binary bin/keygate
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/keygate

tools: ## fetch the Go-installable test servers (Mailpit, Caddy) into bin/tools; npm ci for the Express upstream and axe-core
	@test -x $(TOOLS)/mailpit || GOBIN=$(TOOLS) $(GO) install github.com/axllent/mailpit@$(MAILPIT_VERSION)
	@test -x $(TOOLS)/caddy || GOBIN=$(TOOLS) $(GO) install github.com/caddyserver/caddy/v2/cmd/caddy@$(CADDY_VERSION)
	@if command -v npm >/dev/null && [ ! -d web/testdata/realapps/express/node_modules ]; then \
	  cd web/testdata/realapps/express && npm ci --no-audit --no-fund --loglevel=error; fi
	@if command -v npm >/dev/null && [ ! -d web/testdata/axe/node_modules ]; then \
	  cd web/testdata/axe && npm ci --no-audit --no-fund --loglevel=error; fi

test: tools ## vet and run every test with the race detector
	$(GO) vet ./...
	PATH="$(TOOLS):$$PATH" $(GO) test -race -count=1 -timeout 15m ./...

lint: ## go vet + staticcheck + gofmt
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt wants changes"; exit 1; }

bench: build ## wrk: keygate (Badger and PostgreSQL) vs bare proxy, direct, nginx; sign-ins; scale; Go benchmarks (bench/results.md)
	GO=$(GO) bench/run.sh

FUZZ_TARGETS := ./policy/:FuzzCompileEvaluate ./policy/:FuzzGlob ./policy/:FuzzReadings ./web/:FuzzSafeRedirect ./web/:FuzzPolicyPath ./web/:FuzzAuthzTarget ./authn/:FuzzParsePHC ./web/:FuzzCookieID \
	./authn/:FuzzSessionLookup ./web/:FuzzSessionCookie ./web/:FuzzForwardedHeaders ./web/:FuzzDecodeJSON \
	./factors/webauthn/:FuzzFinishLogin ./factors/webauthn/:FuzzFinishRegistration

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$fn ($$pkg)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $${FUZZTIME:-30s} $$pkg; \
	done

# Traefik v2 in front of keygate, running examples/traefik/dynamic.yml with
# the same checks as the nginx and Caddy tests (web/traefik_test.go, build
# tag interop). Not part of `make test`: Traefik is a large build. v3 does
# not build with go install (a nested module the proxy refuses).
TRAEFIK_VERSION := v2.10.7

interop: ## build Traefik v2 into bin/interop and run the forward-auth checks through it
	@# KEYGATE_TRAEFIK=/path/to/traefik skips the build. .ci/build-traefik
	@# builds in a throwaway module: `go install traefik@version` is refused
	@# where the module proxy does not serve the version list.
	test -n "$$KEYGATE_TRAEFIK" || test -x bin/interop/traefik || GO=$(GO) TRAEFIK_VERSION=$(TRAEFIK_VERSION) .ci/build-traefik bin/interop/traefik
	KEYGATE_TRAEFIK=$${KEYGATE_TRAEFIK:-$(CURDIR)/bin/interop/traefik} $(GO) test -tags interop -race -count=1 -run '^TestTraefik' ./web/

clean: ## remove build output (keeps demo data)
	rm -rf bin
