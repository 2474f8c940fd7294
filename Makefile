# Director: `make run` serves the example setup, `make test` runs the whole suite.
# Both work on a fresh machine with Python 3.11+ and make: they create .venv themselves.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null && $$p 2>/dev/null -c 'import sys; sys.exit(sys.version_info < (3, 11))' && echo $$p && break; done)
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= director.toml

.PHONY: run test bench venv test-venv clean

$(VENV)/.run-deps: requirements.txt
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: $(VENV)/.run-deps requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

venv: $(VENV)/.run-deps
test-venv: $(VENV)/.test-deps

$(CONFIG):
	cp director.example.toml $(CONFIG)

run: $(VENV)/.run-deps $(CONFIG)
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py ensureadmin
	@trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py demobackends & demo=$$!; \
	$(PY) manage.py runproxy --config $(CONFIG)

test: $(VENV)/.test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-deps
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var db.sqlite3
