# fivetuple: the commands a newcomer needs.
CARGO ?= cargo
BIN   := target/release/fivetuple

.PHONY: build run test lint fmt doc bench fuzz soak clean

build:
	$(CARGO) build --release

# Serves on 0.0.0.0:500, the port of the story (needs root, or see README).
run: build
	$(BIN) serve

test:
	$(CARGO) build --release
	$(CARGO) test --release

lint:
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

# Minutes of mixed hostile traffic; the short version runs in `make test`.
SOAK_SECS ?= 180
soak:
	FIVETUPLE_SOAK_SECS=$(SOAK_SECS) $(CARGO) test --release --test soak -- --nocapture

# The mio reactor against the tokio version (wrk, /proc, strace), then the
# protocol micro-benchmarks. Writes target/bench/ and docs/benchmarks.md.
bench:
	command -v wrk >/dev/null && command -v strace >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk strace)
	$(CARGO) build --release --bin fivetuple --example tokio_server --example bench_compare
	./target/release/examples/bench_compare
	$(CARGO) bench --bench protocol -- --warm-up-time 1 --measurement-time 3
