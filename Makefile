# Two entry points: `make run` (embedded stack + demo) and `make test`. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install lock browser checkov run test bench lint mutation clean reset

# Reproducible installs: the exact versions the tests passed with (requirements.lock, made by
# `make lock` from pyproject.toml), then the project itself without resolving again.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e '.[dev]'
	touch $@

# Re-resolve requirements.lock after changing dependencies in pyproject.toml.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11.7 \
	  --python-platform x86_64-manylinux_2_28 --no-header -q -o requirements.lock

install: $(VENV)/.installed

# checkov (template scan in tests/test_templates_checkov.py) pins an old boto3, so it lives in its
# own venv instead of the dev extra.
CHECKOV := .tools/checkov
$(CHECKOV)/.installed:
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install -q 'checkov>=3.2,<4'
	touch $@

checkov: $(CHECKOV)/.installed

# Debian's Chromium for the Web UI browser test (tests/integration/test_web_ui.py). As root on
# Debian/Ubuntu: refresh the package lists, then install (a fresh machine has no lists, so installing
# first always fails there). Where that is impossible the test skips on a developer machine, and
# when CI is set this target fails (and so would the test).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "$${BRIDGEHEAD_CHROMIUM:-}" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends chromium && command -v chromium >/dev/null 2>&1 && exit 0; \
	fi; \
	if [ -n "$${CI:-}" ]; then echo "error: chromium is required when CI is set (as root on Debian: apt-get update && apt-get install chromium)" >&2; exit 1; fi; \
	echo "note: chromium could not be installed; the browser test will be skipped (it fails when CI is set)"

run: install
	$(PY) -m starter up --demo

# Two processes (pytest-xdist), whole modules to each: most integration time is waiting on the stack,
# so a second process with its own embedded stack halves the wall time on 2 cores. Recording
# histories needs one process (the recorders read what earlier tests of the same session ran).
TEST_WORKERS ?= $(if $(BRIDGEHEAD_RECORD_HISTORIES),0,2)
test: install browser checkov
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# Benchmarks (docs/benchmarks.md): make bench SIZE=small|full|smoke
SIZE ?= small
bench: install
	$(PY) -m bench --size $(SIZE)

# Mutation testing of the pure core (bridgehead/billing.py, bridgehead/policies.py) with mutmut; a few
# minutes on 2 cores, not part of `make test`. Score and surviving mutants: docs/reliability.md.
# mutmut's own exit status only says that some mutant survived; the score decides: the target fails
# below MUTATION_GOAL per cent of mutants detected (killed, or made the tests time out).
MUTATION_GOAL ?= 90
mutation: install
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2 >/dev/null 2>&1 || true
	@$(VENV)/bin/mutmut results --all true | awk -F': ' '{n[$$2]++} END {for (k in n) print k": "n[k]; }' | sort
	@$(VENV)/bin/mutmut results
	@$(VENV)/bin/mutmut results --all true | $(MUTATION_SCORE)

MUTATION_SCORE = awk -F': ' -v goal=$(MUTATION_GOAL) '{t++} $$2 == "killed" || $$2 == "timeout" {k++} \
	END {s = t ? 100 * k / t : 0; printf "mutation score: %d of %d detected (%.1f %%), goal %d %%\n", k, t, s, goal; exit (s < goal)}'

lint: install
	$(VENV)/bin/ruff check .

# Forget the embedded stack's state (Temporal's SQLite file, logs, the generated payload key); keeps .venv.
reset:
	rm -rf .state

clean:
	rm -rf $(VENV) .state test-artifacts mutants
