#!/usr/bin/env python3
"""Estimate how long a finished run's workflow takes on N cores, from the wall time each of its jobs took.

Usage: python tools/makespan.py [--run .] [--cores 2 4 8 16] [-- <extra snakemake arguments, e.g. --configfile x>]

Reads Snakemake's dry run of the whole DAG (`-n --forceall`: every job with its input, output, benchmark and
threads) and each job's benchmark file (`results/benchmarks/...tsv`, wall seconds `s`). Then it schedules the jobs
on N cores the way Snakemake's local scheduler does in effect: whenever cores are free, the longest ready job that
fits starts; a job takes min(threads, N) cores. For each N it prints the estimated wall time beside the two
bounds no schedule beats: job-seconds / N, and the critical path (the longest chain of jobs that wait for each
other).

An estimate: each job is taken to last on N cores what it lasted in the run. That holds for the single-threaded
jobs, each on its own core; a job whose threads would grow with the cores (base_model: 2) is not sped up, and
Snakemake's own start-up and `snakemake --report` are not counted. Checked on the default's 2-core run of
2026-12-01: 113.2 min estimated, 114.2 min measured.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:[ \t]+\S.*\n)*)", re.MULTILINE)


@dataclass(frozen=True)
class Job:
    rule: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    benchmark: str | None
    threads: int


def dry_run_jobs(run: Path, snakemake_arguments: list[str]) -> list[Job]:
    """Every job of the workflow in `run`, as Snakemake's dry run of the whole DAG lists it."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "64", *snakemake_arguments],
                            cwd=run, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake's dry run failed in {run}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    jobs = []
    for rule, body in JOB_BLOCK.findall(result.stdout):
        fields = dict(line.strip().split(": ", 1) for line in body.splitlines() if ": " in line)
        jobs.append(Job(rule, tuple(filter(None, fields.get("input", "").split(", "))),
                        tuple(filter(None, fields.get("output", "").split(", "))), fields.get("benchmark"),
                        int(fields.get("threads", 1))))
    if not jobs:
        raise RuntimeError(f"snakemake's dry run in {run} lists no job")
    return jobs


def job_seconds(run: Path, job: Job) -> float:
    """The wall seconds of `job` in the finished run (its benchmark's last row); 0 for a job without benchmark
    (target rules such as `all`)."""
    if job.benchmark is None:
        return 0.0
    path = run / job.benchmark
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: estimate only a run whose jobs have all finished "
                                f"(rule {job.rule}; run `snakemake --cores N` first)")
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return float(rows[-1]["s"])


def dependencies(jobs: list[Job]) -> list[set[int]]:
    """For each job, the jobs that write one of its inputs."""
    writer = {output: index for index, job in enumerate(jobs) for output in job.outputs}
    return [{writer[path] for path in job.inputs if path in writer} for job in jobs]


def critical_path(seconds: list[float], waits_for: list[set[int]]) -> float:
    """The longest chain of jobs that each wait for the one before: no number of cores finishes sooner."""
    finish: dict[int, float] = {}

    def finished(index: int) -> float:
        if index not in finish:
            finish[index] = seconds[index] + max((finished(before) for before in waits_for[index]), default=0.0)
        return finish[index]

    return max(finished(index) for index in range(len(seconds)))


def makespan(seconds: list[float], threads: list[int], waits_for: list[set[int]], cores: int) -> float:
    """Wall time of the jobs on `cores`: whenever cores are free, the longest ready job that fits starts."""
    done_at: dict[int, float] = {}
    pending = set(range(len(seconds)))
    running: list[tuple[float, int, int]] = []  # (end, job, cores taken)
    now, free = 0.0, cores
    while pending or running:
        ready = [index for index in pending if all(done_at.get(before, float("inf")) <= now for before in waits_for[index])]
        for index in sorted(ready, key=lambda index: (-seconds[index], index)):
            taken = min(threads[index], cores)
            if taken <= free:
                free -= taken
                pending.discard(index)
                heapq.heappush(running, (now + seconds[index], index, taken))
        if not running:
            raise ValueError("jobs wait for each other in a cycle")
        now = running[0][0]
        while running and running[0][0] <= now:
            _, index, taken = heapq.heappop(running)
            done_at[index] = now
            free += taken
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("."), help="the finished run's folder (default: here)")
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("snakemake_arguments", nargs="*", help="after --: passed to snakemake's dry run")
    arguments = parser.parse_args()
    jobs = dry_run_jobs(arguments.run, arguments.snakemake_arguments)
    seconds = [job_seconds(arguments.run, job) for job in jobs]
    threads = [job.threads for job in jobs]
    waits_for = dependencies(jobs)
    total, longest_chain = sum(seconds), critical_path(seconds, waits_for)
    print(f"{len(jobs)} jobs, {total:,.0f} job-seconds; critical path {longest_chain / 60:.1f} min")
    print("cores  estimated min  bound: job-seconds / cores  bound: critical path")
    for cores in arguments.cores:
        estimate = makespan(seconds, threads, waits_for, cores)
        print(f"{cores:5d}  {estimate / 60:13.1f}  {total / cores / 60:26.1f}  {longest_chain / 60:20.1f}")


if __name__ == "__main__":
    main()
