"""Logging for Snakemake script entry points: everything a job prints goes to its rule's log file."""

import logging
import sys
from pathlib import Path


def log_to_file(path: str | Path) -> None:
    """Send stdout, stderr (tqdm progress bars, tracebacks) and `logging` to the job's log file."""
    handle = open(path, "w", buffering=1)
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
