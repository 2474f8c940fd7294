# Director: `make run` serves the example setup, `make test` runs the whole suite.
# Both work on a fresh machine with Python 3.11+ and make: they create .venv themselves.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null && $$p 2>/dev/null -c 'import sys; sys.exit(sys.version_info < (3, 11))' && echo $$p && break; done)
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= director.toml

COMPAT_VENV ?= .venv-compat
COMPAT_UPGRADE ?= daphne Twisted
COMPAT_TESTS ?= tests/unit/test_twisted_compat.py tests/unit/test_reactor.py tests/unit/test_http_parser.py \
	tests/integration/test_server_*.py tests/integration/test_runproxy_startup.py \
	tests/integration/test_proxy_tls_listener.py tests/integration/test_proxy_http2.py

.PHONY: run test bench instructions venv test-venv compat clean

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
	$(PY) manage.py waitlisten 127.0.0.1:3001 127.0.0.1:3002 && \
	$(PY) manage.py runproxy --config $(CONFIG)

test: $(VENV)/.test-deps
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

# The server and its conformance tests on the newest daphne and Twisted on PyPI (not CI):
# does the adapter (proxy/twisted_compat.py) still fit? Its own venv, rebuilt each time.
# Other versions: make compat COMPAT_UPGRADE="Twisted==25.5.0"
compat:
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is required" >&2; exit 1; }
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q -r requirements-test.txt
	$(COMPAT_VENV)/bin/python -m pip install -q -U $(COMPAT_UPGRADE)
	@$(COMPAT_VENV)/bin/python -c 'from importlib.metadata import version as v; print("compat: Twisted", v("Twisted"), "/ daphne", v("daphne"))'
	$(COMPAT_VENV)/bin/python -m pytest -q $(COMPAT_TESTS)

bench: $(VENV)/.test-deps
	$(PY) bench/run.py $(BENCH_ARGS)

instructions: $(VENV)/.test-deps
	$(PY) bench/instructions.py $(INSTRUCTIONS_ARGS)

clean:
	rm -rf $(VENV) var db.sqlite3
