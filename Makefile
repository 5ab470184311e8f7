# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates its own virtualenv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format influxdb mosquitto clean

$(BIN)/lineguard: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# InfluxDB: Debian's influxdb package where apt is available; elsewhere point
# LINEGUARD_INFLUX_URL (and _USERNAME/_PASSWORD or _TOKEN) at an InfluxDB
# 1.x, 2.x or 3.x, and the stack uses it instead of starting influxd.
influxdb:
	@if command -v influxd >/dev/null 2>&1; then :; \
	elif [ -n "$$LINEGUARD_INFLUX_URL" ]; then echo "using InfluxDB at $$LINEGUARD_INFLUX_URL"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's influxdb package ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null; \
	else \
		echo "influxd not found and apt is not available."; \
		echo "Install InfluxDB 1.x, or set LINEGUARD_INFLUX_URL to an InfluxDB 1.x/2.x/3.x"; \
		echo "(with LINEGUARD_INFLUX_TOKEN or LINEGUARD_INFLUX_USERNAME/_PASSWORD)."; \
		exit 1; \
	fi

# MQTT broker for the gateway's Sparkplug B / MQTT JSON tests and demo:
# Debian's mosquitto package (the stack starts it on a free port; the
# package's own service is not used).
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's mosquitto package ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto not found and apt is not available: install an MQTT broker (mosquitto)."; \
		exit 1; \
	fi

demo: $(BIN)/lineguard influxdb mosquitto
	$(BIN)/lineguard demo

# Coverage includes the worker and gateway subprocesses the tests start
# (pyproject's [tool.coverage.run] patch = subprocess); the table per package
# at the end fails the run below the floors in [tool.lineguard.coverage-floor].
test: $(BIN)/lineguard influxdb mosquitto
	$(BIN)/python .ci/lint_layers.py
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest
	$(BIN)/python -m coverage combine -q
	$(BIN)/python .ci/coverage_table.py

lint: $(BIN)/lineguard
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/lint_layers.py

format: $(BIN)/lineguard
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info .coverage .coverage.*
