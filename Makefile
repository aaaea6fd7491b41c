# csrd — build, run and test. `make run` and `make test` work on a fresh
# Debian machine as root: `deps` installs whatever is missing first.

SHELL      := /bin/bash
GO         ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
export CGO_ENABLED := 1

# Installation layout; `make install DESTDIR=/tmp/root PREFIX=/usr` for packaging.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
DOCDIR      ?= $(PREFIX)/share/doc/csrd
UNITDIR     ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
SYSCONFDIR  ?= /etc
BUILD_DIR   ?= bin
# -version prints the commit from the build info: stamp it even where the
# environment's GOFLAGS says -buildvcs=false (BUILDVCS=false to skip).
BUILDVCS    ?= auto

DEV_DIR    := .dev
DEV_TOKEN  := csrd-dev
DEV_CONFIG := config/csrd.example.yaml

# The TPM token of the test matrix: a software TPM 2.0 (swtpm), the
# tpm2-abrmd resource manager on a private D-Bus session bus, and
# tpm2-pkcs11 with the TCTIs it loads. Their postinst may start system
# services; the tests start their own instances and never use those.
TPM_DEPS := swtpm:/usr/bin/swtpm swtpm-tools:/usr/bin/swtpm_setup tpm2-tools:/usr/bin/tpm2_getrandom \
        tpm2-abrmd:/usr/sbin/tpm2-abrmd dbus:/usr/bin/dbus-daemon \
        libtss2-tcti-swtpm0:/usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0 \
        libtss2-tcti-tabrmd0:/usr/lib/x86_64-linux-gnu/libtss2-tcti-tabrmd.so.0 \
        libtpm2-pkcs11-1:/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so \
        python3-tpm2-pkcs11-tools:/usr/lib/python3/dist-packages/tpm2_pkcs11/tpm2_ptool.py \
        libtpm2-pkcs11-tools:/usr/bin/tpm2_ptool

# Debian packages the build, the daemon and the tests need, each as
# package:file-that-proves-it-is-installed (a glob). postgresql is for the
# tests' throw-away clusters (fixture/postgres.go): its install may create
# and start a system cluster, which the tests never use.
DEPS := softhsm2:/usr/bin/softhsm2-util opensc:/usr/bin/pkcs11-tool openssl:/usr/bin/openssl \
        libengine-pkcs11-openssl:/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so \
        sqlite3:/usr/bin/sqlite3 gcc:/usr/bin/gcc curl:/usr/bin/curl \
        systemd:/usr/bin/systemd-analyze postgresql:/usr/lib/postgresql/*/bin/initdb \
        bind9:/usr/sbin/named \
        p11-kit:/usr/bin/p11-kit p11-kit-modules:/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so \
        $(TPM_DEPS)

# Fuzz targets as package:FuzzName; `make fuzz FUZZTIME=5m` runs each longer.
# FUZZMINTIME bounds minimising each new interesting input: Go's default
# (60s) can eat a whole run on a busy 2-core machine with large seeds.
FUZZTIME     ?= 60s
FUZZMINTIME  ?= 5s
FUZZ_TARGETS := ./csr:FuzzParseDN ./csr:FuzzParseSANs ./api:FuzzGenerateDecode ./policy:FuzzParse ./lifecycle:FuzzImportCertificates

.PHONY: all deps build tools run dev-token dev-tls install test vet lint fuzz load bench clean

all: build

## deps: install missing Debian packages (apt-get update runs once, only if something is missing)
deps:
	@missing=$$(for d in $(DEPS); do compgen -G "$${d#*:}" >/dev/null || printf ' %s' "$${d%%:*}"; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "deps: run as root, or install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@test -x "$(GO)" || { echo "deps: Go toolchain not found (expected at /usr/local/go)" >&2; exit 1; }
	@# Pebble, the ACME test CA, is a Go tool pinned in tools/pebble/go.mod (not in
	@# the product's go.mod); building it once here puts it in the build cache.
	@$(GO) tool -modfile=tools/pebble/go.mod -n pebble >/dev/null

## build: bin/csrd, bin/csrctl (BUILD_DIR=... to build elsewhere)
build: deps
	$(GO) build -trimpath -buildvcs=$(BUILDVCS) -o $(BUILD_DIR)/ ./cmd/...

## tools: bin/csrd-bench, bin/csrd-load (the benchmark and the load generator, from tools/)
tools: deps
	$(GO) build -trimpath -o $(BUILD_DIR)/ ./tools/cmd/...

## dev-token: a SoftHSM2 development token under .dev/ with a generated PIN file
dev-token: deps
	@bash softhsm-test/init-token.sh $(DEV_DIR) $(DEV_TOKEN) >/dev/null

# make run TLS=1 serves HTTPS on 127.0.0.1:8443 with a self-signed dev certificate.
TLS ?=
ifneq ($(TLS),)
RUN_URL   := https://127.0.0.1:8443
RUN_FLAGS := -listen 127.0.0.1:8443 -tls.cert_file $(DEV_DIR)/tls.crt -tls.key_file $(DEV_DIR)/tls.key
RUN_CURL  := curl -s --cacert $(DEV_DIR)/tls.crt
RUN_DEPS  := dev-tls
else
RUN_URL   := http://127.0.0.1:8080
RUN_CURL  := curl -s
endif

## run: install, build, initialise the dev token and start csrd on 127.0.0.1:8080 (TLS=1: https on 8443)
run: build dev-token $(RUN_DEPS)
	@echo
	@echo "csrd starts on $(RUN_URL) (token $(DEV_TOKEN), PIN in $(DEV_DIR)/hsm-pin). Try:"
	@echo
	@echo "  $(RUN_CURL) -X POST $(RUN_URL)/KeyfactorAPI/CSRGeneration/Generate \\"
	@echo "    -H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"Subject\":\"CN=websrvr14.keyexample.com,OU=IT,O=\\\"Key Example, Inc.\\\",L=Independence,ST=OH,C=US\","
	@echo "         \"KeyType\":\"ECC\",\"KeyLength\":256,\"SANs\":{\"dns\":[\"websrvr14.keyexample.com\"],\"ip4\":[\"192.168.12.14\"]}}'"
	@echo "  $(RUN_CURL) $(RUN_URL)/readyz"
	@echo
	@echo "csrctl, from another shell in this directory (pending ls/show read the database only;"
	@echo "generate, import, pending rm and reconcile open the token, which SOFTHSM2_CONF locates):"
	@echo "  ./bin/csrctl pending ls -config $(DEV_CONFIG)"
	@echo "  SOFTHSM2_CONF=$(DEV_DIR)/softhsm2.conf ./bin/csrctl pending rm -config $(DEV_CONFIG) ID"
	@echo
	SOFTHSM2_CONF=$(CURDIR)/$(DEV_DIR)/softhsm2.conf exec ./bin/csrd -config $(DEV_CONFIG) $(RUN_FLAGS)

## dev-tls: a self-signed development certificate for localhost/127.0.0.1 (.dev/tls.crt, .dev/tls.key)
dev-tls: deps
	@mkdir -p $(DEV_DIR)
	@if [ ! -s $(DEV_DIR)/tls.crt ] || ! openssl x509 -checkend 86400 -noout -in $(DEV_DIR)/tls.crt >/dev/null; then \
	  (umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
	    -subj "/CN=csrd development" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
	    -addext "extendedKeyUsage=serverAuth" \
	    -keyout $(DEV_DIR)/tls.key -out $(DEV_DIR)/tls.crt 2>/dev/null) && \
	  echo "dev-tls: self-signed certificate in $(DEV_DIR)/tls.crt (30 days)"; \
	fi

## install: binaries, unit, sysusers file, example config (never overwritten) into DESTDIR/PREFIX
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BUILD_DIR)/csrd $(BUILD_DIR)/csrctl $(DESTDIR)$(BINDIR)/
	sed -e 's#/usr/local/bin/csrd#$(BINDIR)/csrd#' -e 's#/usr/local/share/doc/csrd#$(DOCDIR)#' \
	  systemd/csrd.service >$(DESTDIR)$(UNITDIR)/csrd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/csrd.service
	install -m 0644 systemd/csrd.sysusers $(DESTDIR)$(SYSUSERSDIR)/csrd.conf
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 config/auth.example.yaml $(DESTDIR)$(DOCDIR)/auth.example.yaml
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/csrd
	@for f in config/csrd.yaml:csrd.yaml policy.example.yaml:policy.yaml; do \
	  dst=$(DESTDIR)$(SYSCONFDIR)/csrd/$${f#*:}; \
	  if [ -e "$$dst" ]; then echo "install: keeping existing $$dst"; \
	  else install -m 0644 $${f%%:*} "$$dst" && echo "install: $$dst"; fi; \
	done
	@if [ -z "$(DESTDIR)" ]; then \
	  echo "next: systemd-sysusers; put the PIN in $(SYSCONFDIR)/csrd/hsm-pin (0600 root);"; \
	  echo "      csrctl user add -op generate,pending_read,pending_delete 'DOMAIN\\user' (auth file, see csrd.yaml);"; \
	  echo "      edit $(SYSCONFDIR)/csrd/csrd.yaml; systemctl daemon-reload; systemctl enable --now csrd"; \
	fi

vet: deps
	$(GO) vet ./...

## lint: golangci-lint (.golangci.yml) at the version pinned in tools/lint/go.mod, built into
## Go's cache on first use; nothing is installed
lint: deps
	$(GO) tool -modfile=tools/lint/go.mod golangci-lint run ./...

# The csrd the end-to-end tests run: built once per `make test`, with the
# race detector like the tests (fixture.CSRD refuses a mismatch), apart from
# bin/csrd so that `make run` and `make install` never pick up a race build.
TEST_CSRD := $(BUILD_DIR)/race/csrd

## test: the whole suite, with the race detector, against real SoftHSM2 tokens in temp dirs
## (`go test -short ./...` is the quick loop: it skips the end-to-end, fault and slowest key cases)
test: deps vet
	$(GO) build -race -trimpath -o $(TEST_CSRD) ./cmd/csrd
	CSRD_BIN=$(abspath $(TEST_CSRD)) $(GO) test -race -count=1 -timeout 12m ./...

## fuzz: run every fuzz target for FUZZTIME each (make test runs their seed corpora)
fuzz: deps
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINTIME) $${t%%:*}; \
	done

## bench: csrd vs the raw PKCS#11 limit on a fresh SoftHSM token (~30 min on 2 cores), then
## the same side by side on SoftHSM through p11-kit remoting and on the TPM token (-token-cells; a few minutes);
## writes BENCHMARKS.md and BENCHMARKS.json. BENCH_FLAGS passes options (csrd-bench -h).
BENCH_FLAGS ?=
bench: build tools
	$(BUILD_DIR)/csrd-bench -csrd $(BUILD_DIR)/csrd -md BENCHMARKS.md -json BENCHMARKS.json $(BENCH_FLAGS)

## load: LOAD_CLIENTS concurrent Generate clients for LOAD_DURATION against a freshly started csrd
## (LOAD_FLAGS=-churn deletes every key again, keeping the token's size flat)
LOAD_CLIENTS  ?= 64
LOAD_DURATION ?= 60s
LOAD_FLAGS    ?=
load: build tools
	bash tools/cmd/csrd-load/fresh.sh $(BUILD_DIR)/csrd $(BUILD_DIR)/csrd-load $(LOAD_CLIENTS) $(LOAD_DURATION) $(LOAD_FLAGS)

clean:
	rm -rf bin
