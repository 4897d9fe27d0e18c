"""The cluster set-up: the SLURM profile (slurm/config.yaml) and the conda environments (envs/*.yaml).

The profile is run for real: a one-node SLURM (Debian's slurm-wlm and munge packages) is started on localhost
with one fake T4 GPU, and `snakemake --profile slurm` submits part of the tiny workflow to it. Conda cannot be
used here (its channels are out of reach), so the environments are checked without being created.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
import yte
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from stylegan3_official import TINY, require_official_code, save_snapshot
from workflow_run import copy_workflow, tiny_config

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "slurm/config.yaml"
# The official StyleGAN3 code's own env (Python 3.9): called by the stylegan3 rules, not a Snakemake env of the workflow.
STYLEGAN3_ENV = REPO / "envs/stylegan3.yaml"
ENV_FILES = sorted(path for path in (REPO / "envs").glob("*.yaml") if path != STYLEGAN3_ENV)
ORCHESTRATION = {"snakemake", "snakemake-executor-plugin-slurm"}  # run Snakemake on the login node, not in jobs

RULES_AS_SNAKEMAKE_SEES_THEM = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, DeploymentSettings, OutputSettings, ResourceSettings,
                                      StorageSettings, WorkflowSettings)

with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(ResourceSettings(), ConfigSettings(), StorageSettings(), WorkflowSettings(),
                            DeploymentSettings(), snakefile=Path("Snakefile"), workdir=Path("."))._workflow
    rules = {}
    for rule in workflow.rules:
        folder = Path(rule.snakefile).parent
        rules[rule.name] = {
            "runs_code": not rule.norun,
            "conda": str((folder / rule.conda_env).resolve()) if rule.conda_env else None,
            "script": str((folder / rule.script).resolve()) if rule.script else None,
            "gpu": rule.resources.get("gpu").value if "gpu" in rule.resources else 0,
        }
json.dump(rules, sys.stdout)
"""

# Imports a script's modules and, following every import (also those inside functions, and `from package import
# submodule`) and every importlib.resources.files("package") of the migros modules reached, everything they may
# load; prints the distributions that provided the loaded modules.
DISTRIBUTIONS_IMPORTED = """
import ast, importlib, importlib.metadata, importlib.util, json, sys
from pathlib import Path

def imports_of(source, package):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            yield module
            if module.split(".")[0] == "migros":
                yield from (f"{module}.{alias.name}" for alias in node.names)  # kept below if it is a module
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "files"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value  # data files read from a package

def is_module(name):
    parent = importlib.import_module(name.rpartition(".")[0])
    return hasattr(parent, "__path__") and importlib.util.find_spec(name) is not None

pending = [name for script in sys.argv[1:] for name in imports_of(Path(script).read_text(), None)]
done = set()
while pending:
    name = pending.pop()
    if name in done:
        continue
    done.add(name)
    if name.startswith("migros.") and not is_module(name):
        continue  # a function or constant imported from a migros module
    module = importlib.import_module(name)
    if name.split(".")[0] == "migros":
        package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
        pending += imports_of(Path(module.__file__).read_text(), package)
providers = importlib.metadata.packages_distributions()
json.dump(sorted({dist for name in list(sys.modules) if "." not in name for dist in providers.get(name, [])}), sys.stdout)
"""


def render_profile() -> dict:
    """The profile as Snakemake reads it (a YTE template: the cluster settings block filled in)."""
    with PROFILE.open() as stream:
        return yte.process_yaml(stream, require_use_yte=True)


def profile_variables() -> dict:
    return yaml.safe_load(PROFILE.read_text())["__variables__"]


@pytest.fixture(scope="module")
def rules() -> dict:
    result = subprocess.run([sys.executable, "-c", RULES_AS_SNAKEMAKE_SEES_THEM], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def pyproject_pins() -> dict[str, str]:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in dependencies:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def env_pins(env_file: Path) -> dict[str, str]:
    """The pip section of a conda environment file as {distribution: version}."""
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    (pip_section,) = [entry["pip"] for entry in dependencies if isinstance(entry, dict)]
    pins = {}
    for line in pip_section:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{env_file.name}: {line} is not pinned with =="
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


# ---- the profile ---------------------------------------------------------------------------------------------


def test_profile_is_the_slurm_folder_and_no_default_profile_overrides_it():
    assert PROFILE.is_file()
    assert not (REPO / "profiles/default").exists()  # would be loaded too and override the profile key by key
    profile = render_profile()
    assert profile["executor"] == "slurm"
    assert profile["software-deployment-method"] == "conda"
    variables = profile_variables()
    assert profile["default-resources"]["slurm_partition"] == variables["cpu_partition"]
    assert profile["default-resources"]["slurm_account"] == variables["account"]


def test_every_gpu_rule_gets_a_t4_on_the_gpu_partition_and_no_other_rule_a_gpu(rules):
    variables = profile_variables()
    profile = render_profile()
    settings = profile["set-resources"]
    named = set(settings) | set(profile["set-threads"])
    assert named <= set(rules), f"the profile names rules the workflow lacks (Snakemake ignores them): {named - set(rules)}"
    for name, rule in rules.items():
        resources = settings.get(name, {})
        if rule["gpu"]:
            assert resources.get("gpu_model") == variables["gpu_model"] == "t4", name
            assert resources.get("slurm_partition") == variables["gpu_partition"], name
        else:
            assert "gpu_model" not in resources and "gpu" not in resources, name  # gpu_model alone requests a GPU
            assert resources.get("slurm_partition", variables["cpu_partition"]) == variables["cpu_partition"], name


def test_stylegan3_training_is_a_t4_job_on_the_gpu_partition_and_its_preflight_a_cpu_job(rules):
    """The StyleGAN3 baseline only trains on a GPU: the rule asks for one and the profile sends it to a T4; the
    pre-flight that checks the pickle first, and the merge of the two classes' images, take no GPU."""
    variables = profile_variables()
    profile = render_profile()
    assert rules["stylegan3_train"]["gpu"] == 1
    assert rules["stylegan3_preflight"]["gpu"] == rules["stylegan3_merge"]["gpu"] == 0
    for rule in ("stylegan3_preflight", "stylegan3_train", "stylegan3_merge"):
        assert rules[rule]["conda"] == str(REPO / "envs/diffusion.yaml")
    resources = profile["set-resources"]["stylegan3_train"]
    assert resources["gpu_model"] == variables["gpu_model"] == "t4"
    assert resources["slurm_partition"] == variables["gpu_partition"]
    assert resources["runtime"] >= 24 * 60 and resources["mem_mb"] >= 16000
    assert profile["set-threads"]["stylegan3_train"] >= 4  # train.py's 3 DataLoader workers and the training process


def test_stylegan3_env_follows_the_official_environment():
    """envs/stylegan3.yaml is the official code's environment.yml (Python 3.9, PyTorch 1.9.1, CUDA 11.1, ninja)."""
    dependencies = yaml.safe_load(STYLEGAN3_ENV.read_text())["dependencies"]
    conda = {entry.split("=")[0]: entry.split("=", 1)[1] for entry in dependencies if isinstance(entry, str) and "=" in entry}
    assert conda["python"] == "3.9" and conda["pytorch"] == "1.9.1" and conda["cudatoolkit"] == "11.1"
    assert "ninja" in conda and "click" in conda and "scipy" in conda


# ---- the conda environments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.stem)
def test_env_pins_equal_pyproject_pins(env_file):
    environment = yaml.safe_load(env_file.read_text())
    python = next(entry for entry in environment["dependencies"] if isinstance(entry, str) and entry.startswith("python="))
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python.removeprefix("python=") + ".0" in SpecifierSet(required)
    pins = pyproject_pins()
    for name, version in env_pins(env_file).items():
        assert name in pins, f"{env_file.name}: {name} is not pinned in pyproject.toml"
        assert version == pins[name], f"{env_file.name}: {name}=={version}, pyproject.toml pins {pins[name]}"


def test_every_rule_that_runs_code_has_a_conda_env_of_envs(rules):
    env_files = {str(path) for path in ENV_FILES}
    for name, rule in rules.items():
        if rule["runs_code"]:
            assert rule["conda"] in env_files, f"rule {name}: conda: {rule['conda']}"


def test_each_env_pins_every_pinned_distribution_its_rules_import(rules):
    """Imports each rule's script (with its migros modules' own imports) here, where every pin is installed."""
    pins = pyproject_pins()
    scripts_of_env = {}
    for rule in rules.values():
        if rule["script"]:
            scripts_of_env.setdefault(rule["conda"], []).append(rule["script"])
    for env_file, scripts in scripts_of_env.items():
        result = subprocess.run([sys.executable, "-c", DISTRIBUTIONS_IMPORTED, *scripts], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        imported = {canonicalize_name(name) for name in json.loads(result.stdout)}
        needed = (imported & set(pins)) - ORCHESTRATION
        missing = needed - set(env_pins(Path(env_file)))
        assert not missing, f"{Path(env_file).name} lacks {sorted(missing)}, imported by {[Path(s).name for s in scripts]}"


def test_post_deploy_script_installs_the_package_importable_from_anywhere(tmp_path):
    """Snakemake runs envs/<name>.post-deploy.sh in each new environment from the repository root."""
    scripts = [env_file.with_suffix(".post-deploy.sh") for env_file in ENV_FILES]
    assert len({script.read_text() for script in scripts}) == 1, "the post-deploy scripts differ"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md", "src"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, checkout / name)
    subprocess.run([sys.executable, "-m", "venv", tmp_path / "env"], check=True)
    environment = {**os.environ, "PATH": f"{tmp_path / 'env/bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(tmp_path / "env")}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(["bash", scripts[0]], cwd=checkout, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    located = subprocess.run(
        [tmp_path / "env/bin/python", "-c", "import migros; print(migros.__file__)"],
        cwd=tmp_path, env=environment, capture_output=True, text=True,
    )
    assert located.stdout.strip() == str(checkout / "src/migros/__init__.py"), located.stderr


# ---- a real SLURM ------------------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def slurm_config(folder: Path) -> str:
    """One node, localhost, as large as the profile's requests (config_overrides: no hardware check), one T4."""
    variables = profile_variables()
    controller_port, node_port = free_ports(2)
    return f"""
ClusterName=migros-test
SlurmctldHost=localhost
SlurmctldPort={controller_port}
SlurmdPort={node_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
NodeName=localhost CPUs=16 RealMemory=256000 Gres=gpu:{variables['gpu_model']}:1 State=UNKNOWN
PartitionName={variables['cpu_partition']} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName={variables['gpu_partition']} Nodes=localhost MaxTime=INFINITE State=UP
"""


def node_states(environment: dict) -> list[str]:
    return subprocess.run(["sinfo", "-h", "-o", "%T"], env=environment, capture_output=True, text=True).stdout.split()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node SLURM; yields the environment in which its commands (sbatch, squeue, ...) reach it."""
    daemons = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol")
    if os.geteuid() != 0 or not all(shutil.which(name) for name in daemons):
        pytest.skip("needs root and Debian's slurm-wlm and munge packages (apt-get install slurm-wlm munge)")
    folder = tmp_path_factory.mktemp("slurm")
    for name in ("state", "spool"):
        (folder / name).mkdir()
    (folder / "munge.key").write_bytes(os.urandom(1024))
    (folder / "munge.key").chmod(0o600)
    (folder / "slurm.conf").write_text(slurm_config(folder))
    # A GPU GRES needs a device file; /dev/null stands in for the T4 (task/none: nothing is fenced off).
    (folder / "gres.conf").write_text(f"Name=gpu Type={profile_variables()['gpu_model']} File=/dev/null\n")
    # Inside a job, the slurm-jobstep plugin drops the SLURM_* variables (SLURM_CONF too) before its srun; on a
    # cluster srun finds slurm.conf in /etc/slurm, this one lies here, so a wrapper hands it back to srun.
    (folder / "bin").mkdir()
    (folder / "bin/srun").write_text(f'#!/bin/sh\nSLURM_CONF={folder}/slurm.conf exec {shutil.which("srun")} "$@"\n')
    (folder / "bin/srun").chmod(0o755)
    environment = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "PATH": f"{folder}/bin:{os.environ['PATH']}"}
    munged = ["munged", "--foreground", "--force", f"--socket={folder}/munge.socket", f"--key-file={folder}/munge.key",
              f"--pid-file={folder}/munged.pid", f"--seed-file={folder}/munged.seed"]
    processes = []
    try:
        for command in (munged, ["slurmctld", "-D"], ["slurmd", "-D", "-N", "localhost"]):
            with open(folder / f"{command[0]}.out", "w") as output:
                processes.append(subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT))
            time.sleep(1)
        deadline = time.monotonic() + 60
        while (states := node_states(environment)) != ["idle"]:
            if time.monotonic() > deadline:
                logs = "".join((folder / name).read_text()[-2000:] for name in ("slurmctld.log", "slurmd.log"))
                pytest.fail(f"SLURM did not come up (sinfo: {states}):\n{logs}")
            time.sleep(1)
        yield environment
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


# GPU rules base_model and generate, CPU rules demo_data, slices and the prompt rules; fine-tuning is left out for time.
TARGET = "results/brats/generate/no_adaptation/manifest.csv"


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    """`snakemake --profile slurm` on the tiny configuration; returns the run's folder and its sbatch lines."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    shutil.copytree(REPO / "slurm", workdir / "slurm")
    config = tiny_config()
    config["datasets"] = {"brats": config["datasets"]["brats"]}
    config["generation"].update(images=4, batch_size=4)
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    overrides = [
        "--sdm", "env-modules",  # switches conda off (no rule names an env module): conda's channels are out of reach
        "--slurm-status-command", "squeue",  # sacct needs slurmdbd; squeue sees finished jobs for MinJobAge
        "--slurm-init-seconds-before-status-checks", "1",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", TARGET, "--profile", "slurm", "--configfile", "tiny.yaml", *overrides, "--verbose"],
        cwd=workdir, env=slurm, capture_output=True, text=True, timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    submissions = {}
    for line in re.findall(r"sbatch call: (sbatch .*)", log):
        rule = re.search(r"--comment '?rule_(\w+?)(?:_wildcards_[^' ]*)?'? ", line).group(1)
        submissions[rule] = line
    jobs = subprocess.run(["scontrol", "--oneliner", "show", "job"], env=slurm, capture_output=True, text=True).stdout
    (workdir / "sbatch_lines.txt").write_text("\n".join(f"{rule}: {line}" for rule, line in submissions.items()))
    return workdir, submissions, jobs.splitlines()


def test_slurm_run_completes_the_target(slurm_run):
    workdir, submissions, jobs = slurm_run
    assert (workdir / TARGET).is_file()
    assert set(submissions) == {"demo_data", "slices", "train_prompts", "generation_prompts", "base_model", "generate"}
    assert len(jobs) == len(submissions) and all("JobState=COMPLETED" in job for job in jobs)


def test_gpu_rules_are_submitted_with_a_t4_on_the_gpu_partition(slurm_run):
    _, submissions, jobs = slurm_run
    variables = profile_variables()
    for rule in ("base_model", "generate"):
        assert "--gpus=t4:1" in submissions[rule]
        assert f"-p {variables['gpu_partition']} " in submissions[rule]
        assert f"-A {variables['account']} " in submissions[rule]
        (job,) = [job for job in jobs if f"Comment=rule_{rule}" in job]
        # accepted and run by SLURM, which had to allocate it the node's only T4
        assert f"Partition={variables['gpu_partition']} " in job and "TresPerJob=gres:gpu:t4:1" in job


def test_cpu_rules_are_submitted_without_a_gpu_on_the_cpu_partition(slurm_run):
    _, submissions, jobs = slurm_run
    variables = profile_variables()
    for rule in ("demo_data", "slices", "train_prompts", "generation_prompts"):
        assert "--gpus" not in submissions[rule] and "--gres" not in submissions[rule]
        assert f"-p {variables['cpu_partition']} " in submissions[rule]
        (job,) = [job for job in jobs if f"Comment=rule_{rule}" in job]
        assert f"Partition={variables['cpu_partition']} " in job and "gres" not in job


def test_stylegan3_training_is_submitted_with_a_t4_after_its_cpu_preflight(slurm, slurm_run, tmp_path):
    """A stylegan3 method submitted for real with NVIDIA's official code and a small pickle it made: the pre-flight
    is a CPU job that accepts the pickle, then one class's training a T4 job on the GPU partition, which stops at
    once with its own error (here no GPU) and not at submission. It runs in the folder of the SLURM run above, whose
    slices it reuses."""
    checkout = require_official_code()
    workdir, _, _ = slurm_run
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    architecture = {**TINY, "resolution": config["datasets"]["brats"]["image_size"]}
    config["methods"]["stylegan3_test"] = {
        "kind": "stylegan3", "checkout": str(checkout), "python": sys.executable,
        "resume_pkl": str(save_snapshot(tmp_path / "pretrained.pkl", **architecture)), **architecture,
        "iterations": 1, "batch": 4,
    }
    (workdir / "stylegan3.yaml").write_text(yaml.safe_dump(config))
    overrides = ["--sdm", "env-modules", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                 "--retries", "0"]
    target = "results/brats/stylegan3/stylegan3_test/healthy/summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", target, "--profile", "slurm", "--configfile", "stylegan3.yaml", *overrides,
         "--verbose"],
        cwd=workdir, env=slurm, capture_output=True, text=True, timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-3000:]  # the training job itself fails: no GPU here
    # the slices are there: only the pre-flight and the training job
    lines = {re.search(r"--comment '?rule_(\w+?)(?:_wildcards_[^' ]*)?'? ", line).group(1): line
             for line in re.findall(r"sbatch call: (sbatch .*)", log)}
    assert set(lines) == {"stylegan3_preflight", "stylegan3_train"}, log[-3000:]
    variables = profile_variables()
    assert "--gpus" not in lines["stylegan3_preflight"] and f"-p {variables['cpu_partition']} " in lines["stylegan3_preflight"]
    train = lines["stylegan3_train"]
    assert "--gpus=t4:1" in train and f"-p {variables['gpu_partition']} " in train and "--cpus-per-task=4" in train
    jobs = subprocess.run(["scontrol", "--oneliner", "show", "job"], env=slurm, capture_output=True, text=True).stdout
    (preflight,) = [job for job in jobs.splitlines() if "Comment=rule_stylegan3_preflight" in job]
    assert "JobState=COMPLETED" in preflight
    (job,) = [job for job in jobs.splitlines() if "Comment=rule_stylegan3_train" in job]
    assert f"Partition={variables['gpu_partition']} " in job and "TresPerJob=gres:gpu:t4:1" in job
    accepted = json.loads((workdir / "results/brats/stylegan3/stylegan3_test/preflight.json").read_text())
    assert accepted["accepted"] and accepted["pickle"]["cbase"] == TINY["cbase"]
    assert "StyleGan3Error" in (workdir / "results/logs/stylegan3_train/brats_stylegan3_test_healthy.log").read_text()
