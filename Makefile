# The two entry points of the README. Each sets up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3.11
VENV := .venv
CORES ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: report test

$(VENV)/installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

report: $(VENV)/installed
	snakemake --cores $(CORES) --show-failed-logs
	snakemake --report results/report.html

test: $(VENV)/installed
	pytest
