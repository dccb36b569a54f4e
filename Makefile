# switchyard: `make help` lists the targets.
CARGO ?= cargo
CONFIG ?= conf/config.yaml
# $(call require,COMMAND,DEBIAN_PACKAGE): installs the package when the command is not on PATH,
# and fails loudly when it cannot.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
require = command -v $(1) >/dev/null 2>&1 || { \
	echo "make: \`$(1)\` is missing: installing Debian's $(2)" >&2; \
	{ $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $(2); } \
	&& command -v $(1) >/dev/null 2>&1 \
	|| { echo "make: cannot install $(2) for \`$(1)\`: install it by hand (apt-get install -y $(2))" >&2; exit 1; }; }

.PHONY: help run build test lint fmt bench protoc etcd nginx redis promtool valgrind

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: protoc ## Build and start the gateway with $(CONFIG) (embedded store, no other service)
	$(CARGO) run --release --bin switchyard -- -c $(CONFIG)

build: protoc ## Build the release binary
	$(CARGO) build --release

test: protoc etcd redis nginx promtool valgrind ## Run every unit and integration test (the etcd and Redis tests spawn real servers)
	$(CARGO) test --workspace --all-targets

lint: protoc ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: protoc etcd redis nginx valgrind ## Benchmark in release mode: mock LLM, gateway, load; prints a table (raw: target/bench/)
	$(CARGO) bench --bench gateway

protoc: ## Install protoc (Debian protobuf-compiler) when missing: the etcd client's build needs it
	@$(call require,protoc,protobuf-compiler)

etcd: ## Install etcd (Debian etcd-server) when missing: the tests run a real one
	@$(call require,etcd,etcd-server)

nginx: ## Install nginx (Debian nginx-light) when missing: the bench's reference proxy (its smoke run in make test too)
	@$(call require,nginx,nginx-light)

redis: ## Install redis-server (Debian redis-server) when missing: the rate limiting tests run a real one
	@$(call require,redis-server,redis-server)

promtool: ## Install promtool (Debian prometheus) when missing: the tests check the metrics exposition with it
	@$(call require,promtool,prometheus)

valgrind: ## Install valgrind (Debian valgrind) when missing: the bench's row 12 counts instructions under callgrind
	@$(call require,callgrind_control,valgrind)
