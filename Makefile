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

# tests/test_cluster.py starts a one-node SLURM on localhost and tests/test_report_browser.py opens the report in
# headless Chromium; as root with apt (CI) both are installed here, elsewhere those tests skip and say why.
SYSTEM_PACKAGES := slurm-wlm munge chromium
test: $(VENV)/installed
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! (command -v slurmctld && command -v chromium) >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(SYSTEM_PACKAGES) >/dev/null) || echo "$(SYSTEM_PACKAGES) could not be installed: their tests will skip"; fi
	pytest
