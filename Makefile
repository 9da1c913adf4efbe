# Ember: the two set-up commands are `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit setup clean

# Debian packages the platform and its tests use: libseccomp (the sandbox's seccomp filter),
# slirp4netns (outbound network for functions tagged ember:network=outbound) and curl (a
# custom-runtime test). Installed only when missing, and only as root.
SYSTEM_PACKAGES := libseccomp2 slirp4netns curl

$(STAMP): requirements.lock pyproject.toml
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	elif [ -n "$$missing" ]; then echo "warning: missing system packages: $$missing"; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

run: setup  ## start ember serve on 127.0.0.1:9000 with data in ./.ember
	$(BIN)/ember serve --host 127.0.0.1 --port 9000 --data-dir ./.ember

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: setup
	$(BIN)/mypy

test: setup lint typecheck  ## lint, type-check, then the whole suite
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
