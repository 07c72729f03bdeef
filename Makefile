# fivetuple: the commands a newcomer needs.
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN   := $(TARGET_DIR)/release/fivetuple
# Where tests that could not run for lack of something (privileges, a
# tool, open files) note themselves, and those that ran smaller than
# written (tests/privilege/mod.rs); `make test` lists them at the end.
SKIPS   := $(TARGET_DIR)/tmp/skipped-tests.txt
SMALLER := $(TARGET_DIR)/tmp/smaller-tests.txt
# Everything `cargo test` printed in the last `make test`, for its totals.
TEST_OUTPUT := $(TARGET_DIR)/tmp/test-output.txt
# `make install` copies the binary to $(PREFIX)/bin: /usr/local for root,
# ~/.local (no root needed, on the PATH of most desktop systems) for others.
PREFIX ?= $(if $(filter 0,$(shell id -u)),/usr/local,$(HOME)/.local)

.PHONY: build built cargo run install uninstall test test-tools lint fmt doc bench bench-scaling bench-server-bound fuzz soak clean profiling demo-hosts

build: cargo
	$(CARGO) build --release

# Says what to do when cargo is missing, rather than make's
# "cargo: No such file or directory".
cargo:
	@command -v $(CARGO) >/dev/null || { \
	  echo "make: $(CARGO) not found. fivetuple needs Rust 1.89 or newer: install it with rustup"; \
	  echo "(https://rustup.rs), then open a new shell. README: Building and testing."; \
	  exit 1; }

# The release binary, for the targets that run it (run, install,
# demo-hosts). Built here, except under sudo: there cargo is usually not on
# the PATH (rustup puts it in ~/.cargo/bin, which sudo's secure_path
# leaves out), and a build as root would leave files in target/ that the
# user can no longer change. Under sudo these targets use the binary the
# user built with `make build`, and say so if it is missing or stale.
built:
	@if [ "$$(id -u)" = 0 ] && [ -n "$${SUDO_USER:-}" ]; then \
	  if [ ! -x $(BIN) ]; then \
	    echo "make: no $(BIN) to use. Build it first as yourself, without sudo: make build"; \
	    exit 1; \
	  fi; \
	  if [ -n "$$(find src Cargo.toml Cargo.lock -newer $(BIN) -print 2>/dev/null | head -n 1)" ]; then \
	    echo "make: note: $(BIN) is older than the sources; run make build as yourself to bring it up to date"; \
	  fi; \
	else \
	  $(MAKE) --no-print-directory build; \
	fi

# The release build with full debug info, for perf: $(TARGET_DIR)/profiling/fivetuple.
profiling:
	$(CARGO) build --profile profiling --bin fivetuple

# Serves on 0.0.0.0:500, the port of the story, where this user may bind it
# (root, CAP_NET_BIND_SERVICE for the shell or on the binary, or a low
# net.ipv4.ip_unprivileged_port_start); anyone else gets port 8500, and one
# line saying why.
run: built
	@if $(call can_bind_port,500); then \
	  exec $(BIN) serve; \
	else \
	  echo "make run: port 500 needs root or CAP_NET_BIND_SERVICE, which this user lacks; serving on 8500 instead (README: What needs root)"; \
	  exec $(BIN) serve --listen 0.0.0.0:8500; \
	fi

# A shell test: may $(BIN), started by this user, bind port $(1)?
# CAP_NET_BIND_SERVICE is bit 10 of the capability sets in /proc/self/status;
# for root the effective set counts (a container may withhold it), for
# anyone else the ambient set (what survives exec) or a file capability on
# the binary (sudo setcap cap_net_bind_service=+ep $(BIN)). getcap lives in
# /usr/sbin on Debian, off a normal user's PATH, so it is looked for there.
can_bind_port = { \
  cap_bit() { c=$$(sed -n "s/^$$1:[[:space:]]*//p" /proc/self/status); [ -n "$$c" ] && [ $$(( 0x$$c >> 10 & 1 )) = 1 ]; }; \
  file_cap() { for g in $$(command -v getcap) /usr/sbin/getcap /sbin/getcap; do \
    [ -x "$$g" ] && { "$$g" $(BIN) | grep -q cap_net_bind_service; return; }; done; return 1; }; \
  start=$$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo 1024); \
  [ $(1) -ge "$$start" ] \
  || { [ "$$(id -u)" = 0 ] && cap_bit CapEff; } \
  || cap_bit CapAmb \
  || file_cap; \
}

# Copies the release binary to $(PREFIX)/bin (make install PREFIX=/opt/x for
# elsewhere). `cargo install --path .` is the other way: it builds again,
# into ~/.cargo/bin.
install: built
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/fivetuple
	@echo "installed $(DESTDIR)$(PREFIX)/bin/fivetuple"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; \
	  *) echo "note: $(PREFIX)/bin is not on your PATH; add it (export PATH=\"$(PREFIX)/bin:\$$PATH\") or run $(PREFIX)/bin/fivetuple";; esac

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/fivetuple

# Every test, in every test binary (the unit tests; tests/suite, all the
# integration tests; the soak): a failing binary does not stop the others
# (--no-fail-fast). Tests that need what this user or machine lacks skip
# themselves; the totals at the end count them apart and name them, so no
# skip goes unseen. The exit status is cargo's: non-zero if any failed.
test: cargo
	$(CARGO) build --release
	@mkdir -p $(TARGET_DIR)/tmp && rm -f $(SKIPS) $(SMALLER)
	@start=$$(date +%s); \
	{ $(CARGO) test --release --no-fail-fast 2>&1; echo $$? > $(TEST_OUTPUT).status; } | tee $(TEST_OUTPUT); \
	status=$$(cat $(TEST_OUTPUT).status); \
	sh scripts/test-summary $(TEST_OUTPUT) $(SKIPS) $(SMALLER) $$(( $$(date +%s) - start )); \
	exit $$status

# The tools the tests use (Debian, Ubuntu; asks for root through sudo).
test-tools:
	scripts/install-test-tools

lint: cargo
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean

# The fuzzer on the sans-IO HTTP core (cargo-fuzz needs a nightly toolchain,
# or RUSTC_BOOTSTRAP=1 on stable). FUZZ_SECS=600 for a longer run.
FUZZ_SECS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && if rustup toolchain list 2>/dev/null | grep -q nightly; then \
	  cargo +nightly fuzz run http_session -- -max_total_time=$(FUZZ_SECS); \
	else \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run http_session -- -max_total_time=$(FUZZ_SECS); \
	fi

# A server host and three client hosts in network namespaces (root, Linux):
# the table with three real remote addresses. Cleans up after itself.
demo-hosts: built
	FIVETUPLE=$(BIN) sh docs/demo-hosts.sh

# Minutes of mixed hostile traffic; the short version runs in `make test`.
SOAK_SECS ?= 180
soak:
	FIVETUPLE_SOAK_SECS=$(SOAK_SECS) $(CARGO) test --release --test soak -- --nocapture

# The mio reactor against the floor (a minimal mio server), the tokio version
# and nginx (wrk, /proc, strace), static files against nginx, the same
# servers held to a CPU quota (server-bound, as root), then the protocol
# micro-benchmarks. Writes target/bench/ and docs/benchmarks.md.
# BENCH_ONLY=step,...: some steps alone (benches/compare/main.rs), e.g.
# BENCH_ONLY=files for the static-file scenarios (target/bench/ only).
bench:
	command -v wrk >/dev/null && command -v strace >/dev/null && command -v valgrind >/dev/null && \
	  { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk strace valgrind nginx)
	$(CARGO) build --release --bin fivetuple --example tokio_server --example floor_server --example bench_compare
	./target/release/examples/bench_compare
	@if [ -z "$$BENCH_ONLY" ]; then \
	  $(CARGO) bench --bench protocol -- --warm-up-time 1 --measurement-time 3; \
	fi

# The server-bound steps alone (benches/compare/server_bound.rs and
# server_bound_workers.rs): every single-core scenario with each server
# held to a share of its core by Linux's CPU controller, and --workers N
# with each worker thread held to a share, so that wrk is the faster side.
# Needs root (the CPU groups); without it the steps say so and skip.
# About eight minutes; puts their sections into docs/benchmarks.md.
bench-server-bound:
	command -v wrk >/dev/null && { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx)
	$(CARGO) build --release --bin fivetuple --example tokio_server --example floor_server --example bench_compare
	BENCH_ONLY=server-bound,server-bound-workers ./target/release/examples/bench_compare

# The scaling step alone (benches/compare/scaling.rs): `serve --workers N`
# against tokio's multi-thread runtime for N = 1, 2, 4, 8, as far as the
# machine's cores go. Writes target/bench/scaling.md and that section of
# docs/benchmarks.md. On a many-core machine without cargo, from a kit
# packed here by ../shared/devkit/make-kit (release binaries and wrk in
# .devkit/): make bench-scaling KIT=1
bench-scaling:
ifeq ($(KIT),1)
	PATH="$(CURDIR)/.devkit/bin:$$PATH" LD_LIBRARY_PATH="$(CURDIR)/.devkit/lib" \
	  BENCH_ONLY=scaling .devkit/bin/bench_compare
else
	command -v wrk >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(CARGO) build --release --bin fivetuple --example tokio_server --example floor_server --example bench_compare
	BENCH_ONLY=scaling ./target/release/examples/bench_compare
endif
