"""tools/makespan.py: the schedule on constructed job graphs, and the whole tool on the session's finished tiny run."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools/makespan.py"
_spec = importlib.util.spec_from_file_location("makespan", SCRIPT)
makespan_tool = sys.modules["makespan"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(makespan_tool)
makespan, critical_path = makespan_tool.makespan, makespan_tool.critical_path


def test_independent_jobs_share_the_cores():
    seconds, threads, waits_for = [10.0] * 4, [1] * 4, [set()] * 4
    assert [makespan(seconds, threads, waits_for, cores) for cores in (1, 2, 4, 8)] == [40, 20, 10, 10]


def test_a_chain_takes_its_sum_on_any_number_of_cores():
    seconds, waits_for = [3.0, 4.0, 5.0], [set(), {0}, {1}]
    assert makespan(seconds, [1, 1, 1], waits_for, cores=8) == 12 == critical_path(seconds, waits_for)


def test_the_longest_ready_job_starts_first():
    # on 2 cores: 10 | 5 + 5 → 10; shortest first would give 5 + 10 = 15
    assert makespan([5.0, 5.0, 10.0], [1, 1, 1], [set()] * 3, cores=2) == 10


def test_a_job_with_more_threads_takes_that_many_cores_capped_at_all_of_them():
    seconds, waits_for = [10.0, 10.0], [set(), set()]
    assert makespan(seconds, [2, 1], waits_for, cores=2) == 20  # the 2-thread job leaves no core for the other
    assert makespan(seconds, [2, 1], waits_for, cores=3) == 10
    assert makespan(seconds, [4, 4], waits_for, cores=1) == 20  # capped: still runs on one core


def test_critical_path_of_a_diamond_takes_the_longer_branch():
    # 0 → {1, 2} → 3
    seconds, waits_for = [1.0, 7.0, 2.0, 1.0], [set(), {0}, {0}, {1, 2}]
    assert critical_path(seconds, waits_for) == 9
    assert makespan(seconds, [1] * 4, waits_for, cores=2) == 9


def test_jobs_waiting_for_each_other_are_named_a_cycle():
    with pytest.raises(ValueError, match="cycle"):
        makespan([1.0, 1.0], [1, 1], [{1}, {0}], cores=2)


def test_the_tool_reads_every_job_of_a_finished_run(finished_run):
    jobs = makespan_tool.dry_run_jobs(finished_run, ["--configfile", "tiny.yaml"])
    rules = {job.rule for job in jobs}
    assert {"slices", "finetune", "generate", "classifier_seed", "classifier", "all"} <= rules
    seconds = [makespan_tool.job_seconds(finished_run, job) for job in jobs]
    assert all(second > 0 for job, second in zip(jobs, seconds) if job.benchmark)
    waits_for = makespan_tool.dependencies(jobs)
    by_rule = {job.rule: index for index, job in enumerate(jobs)}
    assert waits_for[by_rule["all"]]  # `all` waits for the report's inputs
    assert any(jobs[before].rule == "classifier_seed" for before in waits_for[by_rule["classifier"]])

    result = subprocess.run([sys.executable, str(SCRIPT), "--run", str(finished_run), "--cores", "1", "2", "--",
                             "--configfile", "tiny.yaml"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    estimates = {int(row[0]): float(row[1]) for row in rows}
    total_minutes = sum(seconds) / 60
    assert estimates[1] == pytest.approx(total_minutes, abs=0.06)  # one core runs the jobs one after another
    assert max(total_minutes / 2, critical_path(seconds, waits_for) / 60) - 0.06 <= estimates[2] <= estimates[1]


def test_a_run_with_a_job_not_finished_is_refused(tmp_path):
    job = makespan_tool.Job("finetune", (), ("out",), "results/benchmarks/finetune/x.tsv", 1)
    with pytest.raises(FileNotFoundError, match="x.tsv is missing"):
        makespan_tool.job_seconds(tmp_path, job)
