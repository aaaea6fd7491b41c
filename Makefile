# csrd — build, run and test. `make run` and `make test` work on a fresh
# Debian machine as root: `deps` installs whatever is missing first.

SHELL      := /bin/bash
GO         ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
export CGO_ENABLED := 1

DEV_DIR    := .dev
DEV_TOKEN  := csrd-dev
DEV_CONFIG := config/csrd.example.yaml

# Debian packages the build, the daemon and the tests need, each as
# package:file-that-proves-it-is-installed.
DEPS := softhsm2:/usr/bin/softhsm2-util opensc:/usr/bin/pkcs11-tool openssl:/usr/bin/openssl \
        libengine-pkcs11-openssl:/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so \
        sqlite3:/usr/bin/sqlite3 gcc:/usr/bin/gcc curl:/usr/bin/curl

# Fuzz targets as package:FuzzName; `make fuzz FUZZTIME=5m` runs each longer.
FUZZTIME     ?= 60s
FUZZ_TARGETS := ./csr:FuzzParseDN ./csr:FuzzParseSANs ./api:FuzzGenerateDecode ./policy:FuzzParse

.PHONY: all deps build run dev-token test vet fuzz bench clean

all: build

## deps: install missing Debian packages (apt-get update runs once, only if something is missing)
deps:
	@missing=$$(for d in $(DEPS); do [ -e "$${d#*:}" ] || printf ' %s' "$${d%%:*}"; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "deps: run as root, or install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@test -x "$(GO)" || { echo "deps: Go toolchain not found (expected at /usr/local/go)" >&2; exit 1; }

## build: bin/csrd, bin/csrctl
build: deps
	$(GO) build -trimpath -o bin/ ./cmd/...

## dev-token: a SoftHSM2 development token under .dev/ with a generated PIN file
dev-token: deps
	@bash softhsm-test/init-token.sh $(DEV_DIR) $(DEV_TOKEN) >/dev/null

## run: install, build, initialise the dev token and start csrd on 127.0.0.1:8080
run: build dev-token
	@echo
	@echo "csrd starts on http://127.0.0.1:8080 (token $(DEV_TOKEN), PIN in $(DEV_DIR)/hsm-pin). Try:"
	@echo
	@echo "  curl -s -X POST http://127.0.0.1:8080/KeyfactorAPI/CSRGeneration/Generate \\"
	@echo "    -H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"Subject\":\"CN=websrvr14.keyexample.com,OU=IT,O=\\\"Key Example, Inc.\\\",L=Independence,ST=OH,C=US\","
	@echo "         \"KeyType\":\"ECC\",\"KeyLength\":256,\"SANs\":{\"dns\":[\"websrvr14.keyexample.com\"],\"ip4\":[\"192.168.12.14\"]}}'"
	@echo
	SOFTHSM2_CONF=$(CURDIR)/$(DEV_DIR)/softhsm2.conf exec ./bin/csrd -config $(DEV_CONFIG)

vet: deps
	$(GO) vet ./...

## test: the whole suite, with the race detector, against real SoftHSM2 tokens in temp dirs
test: deps vet
	$(GO) test -race -count=1 -timeout 12m ./...

## fuzz: run every fuzz target for FUZZTIME each (make test runs their seed corpora)
fuzz: deps
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) $${t%%:*}; \
	done

clean:
	rm -rf bin
