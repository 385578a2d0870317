# Podforge: two commands for a fresh machine.
#   make demo   sets up .venv and produces the demo episode in output/ (offline, CPU)
#   make test   sets up .venv (with test extras) and runs the test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-heavy bench setup clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/podforge run configs/episodes/demo.md --out output

test: $(STAMP)
	$(PY) -m pytest -q

test-heavy: $(STAMP)
	$(PY) -m pytest -q -m heavy

bench: $(STAMP)
	$(PY) bench/bench_episode.py

clean:
	rm -rf .podforge output
