# The two entry points of the README. Each sets up .venv on first use (and again when pyproject.toml changes).
# The newest of Python 3.13 / 3.12 / 3.11 that runs here (a name that exists but fails, e.g. a pyenv shim of a
# version not selected, is skipped); `make PYTHON=/path/to/python3.12 test` chooses one.
PYTHON_CANDIDATES := python3.13 python3.12 python3.11
PYTHON ?= $(firstword $(foreach candidate,$(PYTHON_CANDIDATES),$(if $(shell $(candidate) -c "" 2>/dev/null && echo ok),$(candidate))))
VENV := .venv
CORES ?= 2
# The configuration `make report` runs: the demo (config/config.yaml), or e.g. CONFIG=config/study.yaml.
CONFIG ?= config/config.yaml
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: report test

$(VENV)/installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "No working python3.13, python3.12 or python3.11 found: install one, or set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

report: $(VENV)/installed
	snakemake --cores $(CORES) --configfile $(CONFIG) --show-failed-logs
	snakemake --configfile $(CONFIG) --report results/report.html

# tests/test_cluster.py starts a one-node SLURM on localhost and tests/test_report_browser.py opens the report in
# headless Chromium; as root with apt (CI) both are installed here, elsewhere those tests skip and say why.
SYSTEM_PACKAGES := slurm-wlm munge chromium
test: $(VENV)/installed
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! (command -v slurmctld && command -v chromium) >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(SYSTEM_PACKAGES) >/dev/null) || echo "$(SYSTEM_PACKAGES) could not be installed: their tests will skip"; fi
	pytest
