# switchyard: `make help` lists the targets.
CARGO ?= cargo
CONFIG ?= conf/config.yaml

.PHONY: help run build test lint fmt bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## Build and start the gateway with $(CONFIG) (embedded store, no other service)
	$(CARGO) run --release --bin switchyard -- -c $(CONFIG)

build: ## Build the release binary
	$(CARGO) build --release

test: ## Run every unit and integration test
	$(CARGO) test --workspace --all-targets

lint: ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Benchmark in release mode: mock LLM, gateway, load; prints a table (raw: target/bench/)
	@command -v etcd >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq etcd-server) || echo "no etcd: row 7 will not be measured"
	$(CARGO) bench --bench gateway
