# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install tools up run test lint down status

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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
