# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install tools up run test lint down status lock

install: $(STAMP)

# Exactly the locked versions, checked against their hashes (the image installs requirements.lock
# the same way), then the project itself.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Regenerate the hash-pinned lock files after a change to pyproject.toml's dependencies. Existing
# pins are kept; `make lock UPGRADE=1` takes the newest versions the ranges allow.
LOCK_VENV := .venv-lock
COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip-tools==7.6.2
	$(COMPILE) --output-file requirements.lock pyproject.toml
	$(COMPILE) --extra dev --output-file requirements-dev.lock pyproject.toml
	@# The dev extra names the project itself (wabridge[stack,bench]): it is installed from the
	@# working tree, not from the lock.
	sed -i '/^# WARNING: pip install will require/,/^    # via wabridge (pyproject.toml)$$/d' requirements-dev.lock
	rm -rf $(LOCK_VENV)

# Debian's prometheus package (Prometheus and promtool): the monitoring tests run the shipped alert
# rules and dashboard queries against a real Prometheus. Installed once, when missing.
tools:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
		echo "installing Debian's prometheus package (Prometheus, promtool) for the monitoring tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }

# The embedded stack: Tansu, moto S3, PostgreSQL, Redis, RabbitMQ; topics, buckets, queues, demo tenant.
up: install
	$(BIN)/wabridge dev up

# The bridge on the embedded stack, in the foreground; Ctrl-C stops it.
run: install
	$(BIN)/wabridge run

lint: install
	$(BIN)/ruff check wabridge tests
	$(BIN)/ruff format --check wabridge tests
	$(BIN)/mypy

# The whole test suite against the real services.
test: up lint tools
	$(BIN)/pytest

status: install
	$(BIN)/wabridge dev status

down: install
	$(BIN)/wabridge dev down
