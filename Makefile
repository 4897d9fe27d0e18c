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

# tests/test_cluster.py starts a one-node SLURM on localhost; as root with apt (CI) it is installed here, elsewhere
# that test skips and says so.
test: $(VENV)/installed
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v slurmctld >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			slurm-wlm munge >/dev/null) || echo "slurm-wlm could not be installed: the SLURM test will skip"; fi
	pytest
