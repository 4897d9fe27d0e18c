"""Start-up of a Snakemake job: its log file and the number of CPU threads it may use."""

import logging
import sys
from pathlib import Path

from threadpoolctl import threadpool_limits


def start_job(log_path: str | Path, threads: int) -> None:
    """Send everything the job prints to its log and keep torch and the BLAS / OpenMP libraries to the `threads`
    Snakemake gave the job.

    stdout and stderr (tqdm bars, tracebacks) and `logging` all go to the log. torch, numpy's OpenBLAS and OpenMP
    would otherwise start one thread per core in every job, so jobs running side by side oversubscribe the cores;
    on 2 cores that made the diffusion jobs many times slower, and the FID stage's statistics (numpy) 2× slower
    beside another busy job. Scripts import their stage module first, so torch is loaded here exactly when the job
    uses it; light jobs are spared its import time.
    """
    handle = open(log_path, "w", buffering=1)
    sys.stdout = sys.stderr = handle
    logging.basicConfig(stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    threads = max(1, int(threads))
    threadpool_limits(threads)  # every BLAS and OpenMP library loaded so far, for the rest of the job
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
