# strata: the two commands a newcomer needs are `make run` and `make test`.
# Both install what they need (Debian packages as root, cargo tools) when it is missing.

SHELL := /bin/bash
DEB_PACKAGES := clang llvm m4 libelf-dev zlib1g-dev pkg-config libbpf-dev iproute2 chrony ntpsec-ntpdig prometheus faketime ethtool systemd dpkg-dev adduser strace bird2 python3-venv nodejs monitoring-plugins-basic python3-ntp openssl
CARGO ?= cargo
FUZZ_SECONDS ?= 40

.PHONY: run test deps build check unit fuzz bench clean deb ntpd-rs k8s-tools ntpq

## run: the whole system in about a minute: a netns lab, chronyd upstream, strata on the XDP path
## synced to it, a real client, a short load sweep, `strata status` and /metrics; all removed after.
## Without root or XDP it says why and runs the socket path on loopback instead.
run: deps build
	bash bench/demo

## test: formatting, lints, every test (unit, property, integration, interop), and the fuzz run.
## The package is built first: tests/deb_package.rs checks it (and, as root, installs and purges it).
test: deps check deb unit fuzz

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "need root to install:$$missing" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

## build: every binary the README mentions (strata, strata-loadgen, strata-loadgen-sink), release.
build:
	$(CARGO) build --release --locked --workspace --bins

## deb: the Debian package, target/debian/strata_VERSION-1_ARCH.deb (cargo-deb; the man pages
## rendered from the clap definitions by deploy/manpages). See [package.metadata.deb] in Cargo.toml.
CARGO_DEB_VERSION := 3.8.0
TARGET_DIR = $${CARGO_TARGET_DIR:-target}
deb: deps build
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --version $(CARGO_DEB_VERSION) --locked
	$(CARGO) run --release --locked -q -p strata-manpages -- $(TARGET_DIR)/release/man
	gzip -9nf $(TARGET_DIR)/release/man/strata.8 $(TARGET_DIR)/release/man/strata-loadgen.8
	$(CARGO) deb --no-build -p strata

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

# Tests that need root, network namespaces, XDP or outside tools (chronyd, ntpdig, faketime,
# promtool, python3) are #[ignore]d, so a plain `cargo test` lists them as ignored; here they run
# too (--include-ignored), and STRATA_REQUIRE_INTEROP=1 makes a missing requirement fail them.
# The criterion benches (run once each as a test) do not take libtest's --include-ignored, so
# they get a call of their own: the two calls cover what --all-targets does.
unit: ntpd-rs k8s-tools ntpq
	STRATA_NTPD_RS=$(NTPD_RS_ROOT)/bin/ntp-daemon STRATA_REQUIRE_INTEROP=$${STRATA_REQUIRE_INTEROP:-1} $(CARGO) test --locked --workspace --lib --bins --tests --examples -- --include-ignored
	$(CARGO) test --locked --workspace --benches

# ntpd-rs (a peer nobody here wrote): an NTS client in the tests, a server in bench/compare.
# Installed once from crates.io into a cache (a few minutes on two cores).
NTPD_RS_VERSION := 1.9.0
NTPD_RS_ROOT := $(HOME)/.cache/strata-bench/ntpd-rs-$(NTPD_RS_VERSION)
ntpd-rs:
	@test -x $(NTPD_RS_ROOT)/bin/ntp-daemon || { \
	  echo "installing ntpd-rs $(NTPD_RS_VERSION) into $(NTPD_RS_ROOT) (once; a few minutes)"; \
	  $(CARGO) install ntpd --version $(NTPD_RS_VERSION) --locked --root $(NTPD_RS_ROOT) \
	    --target-dir $(HOME)/.cache/strata-bench/build; }

# The Kubernetes manifests' validators (tests/kubernetes.rs), installed once into a cache:
# kubernetes-validate from PyPI (the API's schemas of each release, strict) and the Prometheus
# Operator's CRD schemas from npm (@kubernetes-models/prometheus-operator).
K8S_TOOLS := $(HOME)/.cache/strata-k8s
KUBERNETES_VALIDATE_VERSION := 1.37.0
K8S_MODELS_VERSION := 6.0.0
k8s-tools:
	@test -x $(K8S_TOOLS)/venv/bin/kubernetes-validate || { \
	  echo "installing kubernetes-validate $(KUBERNETES_VALIDATE_VERSION) into $(K8S_TOOLS)"; \
	  python3 -m venv $(K8S_TOOLS)/venv && \
	  $(K8S_TOOLS)/venv/bin/pip install -q kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION); }
	@test -d $(K8S_TOOLS)/node_modules/@kubernetes-models/prometheus-operator || { \
	  echo "installing @kubernetes-models/prometheus-operator $(K8S_MODELS_VERSION) into $(K8S_TOOLS)"; \
	  cd $(K8S_TOOLS) && npm install --silent --no-audit --no-fund --no-save \
	    @kubernetes-models/prometheus-operator@$(K8S_MODELS_VERSION); }

# ntpq (tests/monitoring_tools.rs) is in Debian's ntpsec package, which conflicts with chrony:
# its files are extracted into a cache instead of installing it (it runs on python3-ntp).
NTPQ_ROOT := $(HOME)/.cache/strata-ntpq
ntpq: deps
	@test -x $(NTPQ_ROOT)/usr/bin/ntpq || { \
	  echo "extracting ntpq from Debian's ntpsec package into $(NTPQ_ROOT)"; \
	  tmp=$$(mktemp -d) && chmod 777 $$tmp && (cd $$tmp && apt-get download -q ntpsec >/dev/null) && \
	  dpkg-deb -x $$tmp/ntpsec_*.deb $(NTPQ_ROOT) && rm -rf $$tmp; }

# The fuzz targets need a nightly toolchain; without one this says so and skips. Each target runs
# FUZZ_SECONDS (7 targets of 40 s: under five minutes in all, plus the build):
#   parse_respond   arbitrary bytes through every parser, respond() and the frame rewrite;
#   admit_respond   an admission configuration and a sequence of requests through the access
#                   list, the rate limiter and then respond() or the frame rewrite.
#   nts_respond     NTS requests, arbitrary and valid-then-changed, through respond_nts.
#   nts_client_reply  replies to strata's NTS client, arbitrary and genuine-then-changed.
#   interleave      request sequences from a few addresses through respond() and interleaved mode.
#   mac_respond     symmetric-key MACs: requests arbitrary and signed-then-changed through
#                   respond_mac, replies through a source's key check, and the key file parser.
#   netdev_reply    the kernel's netdev netlink answers (xsk-features) as the parsers read them.
FUZZ_TARGETS := parse_respond:512 admit_respond:1024 nts_respond:1024 nts_client_reply:1024 mac_respond:512 interleave:2048 netdev_reply:512
fuzz:
	@if ! rustup run nightly rustc --version >/dev/null 2>&1; then \
	  echo "fuzz: SKIPPED, no nightly toolchain here (cargo-fuzz needs one)"; exit 0; fi; \
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked; \
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  name=$${t%%:*}; max_len=$${t##*:}; mkdir -p corpus/$$name; \
	  $(CARGO) +nightly fuzz run $$name corpus/$$name seeds/$$name -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=$$max_len || exit 1; \
	done

## bench: criterion micro-benchmarks (respond, frame rewrite, checksum, clock read), then
## bench/compare: strata (XDP answer tier, AF_XDP only, socket path) side by side with chronyd,
## ntpd-rs and a bare XDP_TX echo, the table printed and the JSON written under bench/results/
## (ntpd-rs is installed once into a cache); then bench/nts-compare: NTS-protected requests/s
## (strata's AF_XDP tier and socket path against chronyd's NTS server) and NTS-KE handshakes/s,
## the table printed and the JSON written under bench/results/; then bench/admission-cost: the
## XDP program's time per request with rate limiting off and on.
bench: deps build ntpd-rs
	$(CARGO) bench --locked --benches
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "bench/compare, bench/nts-compare: SKIPPED, they need root (network namespaces, XDP)"; \
	else STRATA_NTPD_RS=$(NTPD_RS_ROOT)/bin/ntp-daemon python3 bench/compare && python3 bench/nts-compare && bench/admission-cost; fi

clean:
	$(CARGO) clean
