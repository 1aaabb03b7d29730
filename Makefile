# Two entry points: `make run` (embedded stack + demo) and `make test`. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install browser checkov run test bench lint clean reset

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# checkov (template scan in tests/test_templates_checkov.py) pins an old boto3, so it lives in its
# own venv instead of the dev extra.
CHECKOV := .tools/checkov
$(CHECKOV)/.installed:
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install -q 'checkov>=3.2,<4'
	touch $@

checkov: $(CHECKOV)/.installed

# Debian's Chromium for the Web UI browser test (tests/integration/test_web_ui.py). Best effort:
# where apt-get cannot run, the test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium could not be installed; the browser test will be skipped"

run: install
	$(PY) -m starter up --demo

test: install browser checkov
	$(PY) -m pytest -q -p no:cacheprovider

# Benchmarks (docs/benchmarks.md): make bench SIZE=small|full|smoke
SIZE ?= small
bench: install
	$(PY) -m bench --size $(SIZE)

lint: install
	$(VENV)/bin/ruff check .

# Forget the embedded stack's state (Temporal's SQLite file, logs, the generated payload key); keeps .venv.
reset:
	rm -rf .state

clean:
	rm -rf $(VENV) .state test-artifacts
