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
