# Podforge: two commands for a fresh machine.
#   make demo   sets up .venv and produces the demo episode in output/ (offline, CPU)
#   make test   sets up .venv (with the test extras) and runs the test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-heavy bench serve clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test,ray]"
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/podforge run configs/episodes/demo.md --out output

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

test-heavy: $(VENV)/.installed-test
	$(PY) -m pytest -q -m heavy

bench: $(VENV)/.installed
	$(PY) bench/bench_episode.py

serve: $(VENV)/.installed
	$(VENV)/bin/podforge serve

clean:
	rm -rf .podforge output
