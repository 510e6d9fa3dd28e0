# The README's two commands: `make run` and `make test`. Every install step lives here.
# `make run` installs the runtime set only (`pip install -e .`: what a Raspberry Pi needs); `make test`,
# `make dev` (and lint, typecheck, bench) install the development tools on top (`.[dev]`), `make fuzz` atheris.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
CONFIG ?= gateway.sim.toml

.PHONY: run dev test lint typecheck pytest pytest-native pytest-python mosquitto gpsd bench fuzz verify-systemd clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Editable install: compiles native/*.pyx in place (a failed compile stops here, loudly).
# The runtime set: no compiler-only extras (no atheris, no type stubs), so it installs on the target box.
$(RUNTIME): $(BIN)/python pyproject.toml setup.py $(wildcard native/*.pyx native/*.pxd)
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ] && [ $(STAMP) -nt setup.py ]; then touch $(RUNTIME); exit 0; fi; \
	echo "installing obd-gateway (runtime dependencies only) into $(VENV) (log: $(VENV)/install.log)"; \
	$(BIN)/python -m pip install -e . > $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log" >&2; exit 1; }; \
	$(BIN)/python -c "from gateway.obd import PARSER_BUILD as b; print('parser build:', b)"; \
	touch $(RUNTIME)

# The development set on top: pytest, ruff, mypy, the reference clients the tests use.
$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard native/*.pyx native/*.pxd)
	@echo "installing obd-gateway and its dev dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install -e '.[dev]' > $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log" >&2; exit 1; }
	@$(BIN)/python -c "from gateway.obd import PARSER_BUILD as b; print('parser build:', b)"
	@touch $(STAMP) $(RUNTIME)

dev: $(STAMP)

run: $(RUNTIME)
	@mkdir -p var
	@echo "obd-gateway: the daemon runs against the simulated car; Ctrl-C stops it. In another terminal:"
	@echo "    $(BIN)/obd-gateway status --config $(CONFIG)      (also: watch, values, pids, dtc, trips)"
	$(BIN)/obd-gateway run --sim --config $(CONFIG)

mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto (the tests start their own broker)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	else \
		echo "make test needs the mosquitto broker: install it with 'apt-get install mosquitto' (Debian) and run again" >&2; exit 1; \
	fi

# The location tests start their own gpsd (never the system's) fed by gpsfake (package gpsd-clients).
gpsd:
	@if command -v gpsfake >/dev/null 2>&1 && { command -v gpsd >/dev/null 2>&1 || [ -x /usr/sbin/gpsd ]; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing gpsd and gpsd-clients (the location tests start their own gpsd fed by gpsfake)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gpsd gpsd-clients; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gpsd gpsd-clients; \
	else \
		echo "make test needs gpsd and gpsfake: install them with 'apt-get install gpsd gpsd-clients' (Debian) and run again" >&2; exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check gateway firmware_sim tests bench setup.py

typecheck: $(STAMP)
	$(BIN)/mypy gateway

# Verifies a copy whose ExecStart points at a stub when /usr/local/bin/obd-gateway is not installed.
verify-systemd:
	@sh systemd/verify.sh

pytest-native: $(STAMP) mosquitto gpsd
	OBD_GATEWAY_PURE=0 $(BIN)/python -c "from gateway.obd import PARSER_BUILD as b; assert b == 'native', b"
	OBD_GATEWAY_PURE=0 $(BIN)/python -m pytest -q -p no:cacheprovider

pytest-python: $(STAMP) mosquitto gpsd
	OBD_GATEWAY_PURE=1 $(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck verify-systemd pytest-native pytest-python

bench: $(STAMP)
	$(BIN)/python bench/sim_timing.py
	$(BIN)/python bench/parser.py
	$(BIN)/python bench/link.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/stages.py
	$(BIN)/python bench/daemon.py

fuzz: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,fuzz]'
	$(BIN)/python tests/fuzz/fuzz_parser.py -max_total_time=3600

clean:
	rm -rf $(VENV) build *.egg-info gateway/_native*.so native/*.c var
