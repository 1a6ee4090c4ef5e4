# strata: the two commands a newcomer needs are `make run` and `make test`.
# Both install what they need (Debian packages as root, cargo tools) when it is missing.

SHELL := /bin/bash
DEB_PACKAGES := clang llvm m4 libelf-dev zlib1g-dev pkg-config libbpf-dev iproute2 chrony ntpsec-ntpdig prometheus
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: run test deps build check unit fuzz bench clean

## run: build strata, serve on loopback from the local clock, and show real clients getting time.
run: deps build
	bash bench/demo

## test: formatting, lints, every test (unit, property, integration, interop), and the fuzz run.
test: deps check unit fuzz

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

build:
	$(CARGO) build --release --locked

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Interop tests need root, chronyd and ntpdig; under `make test` their absence is a failure.
unit:
	STRATA_REQUIRE_INTEROP=$${STRATA_REQUIRE_INTEROP:-1} $(CARGO) test --locked --all-targets

# The fuzz target needs a nightly toolchain; without one this says so and skips.
fuzz:
	@if ! rustup run nightly rustc --version >/dev/null 2>&1; then \
	  echo "fuzz: SKIPPED, no nightly toolchain here (cargo-fuzz needs one)"; exit 0; fi; \
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked; \
	mkdir -p fuzz/corpus/parse_respond; \
	cd fuzz && $(CARGO) +nightly fuzz run parse_respond corpus/parse_respond seeds/parse_respond -- -max_total_time=$(FUZZ_SECONDS) -max_len=512

## bench: criterion micro-benchmarks (respond, frame rewrite, clock read).
bench:
	$(CARGO) bench --bench respond

clean:
	$(CARGO) clean
