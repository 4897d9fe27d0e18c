"""Running the Snakemake workflow from tests: a tiny configuration, a private copy of the workflow, the CLI."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "scripts", "envs"]
# A job block of `snakemake -n`: "rule NAME:" (or "localrule NAME:") followed by its indented "key: value" lines.
JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:[ \t]+\S.*\n)*)", re.MULTILINE)
Job = tuple[str, tuple[tuple[str, str], ...]]  # (rule, sorted wildcard items)


def validated(config: dict) -> dict:
    """`config` validated as the workflow validates it (common.smk), with the schema's defaults filled in."""
    from snakemake.utils import validate

    validate(config, str(SCHEMA_PATH), set_default=True)
    return config


def tiny_config() -> dict:
    """config/study.yaml (both phantom datasets) shrunk to two adapters and the GAN per dataset (and on BraTS LoRA
    with the privacy defence) and a few 32-px images: the whole DAG in minutes."""
    config = yaml.safe_load((REPO / "config/study.yaml").read_text())
    brats, picai = config["datasets"]["brats"], config["datasets"]["picai"]
    brats["demo"].update(cases=32, shape=[60, 60, 40])  # a third with a healthy middle slice: room for the reserve
    picai["demo"].update(cases=50, shape=[64, 64, 16], spacing=[3.0, 3.0, 3.0])
    for dataset in (brats, picai):
        dataset["image_size"] = 32
        dataset["split"].update(train=4, test=4, reserve=4)
    config["base_model"]["demo"] = {"image_size": 32, "seed": 0, "corpus_size": 64, "vae_steps": 4, "unet_steps": 4}
    config["finetune"].update(epochs=1, batch_size=2, checkpoint_every=2, replicates=1)  # tests add a second
    config["methods"] = {name: config["methods"][name] for name in ("lora_r4", "selora_l1.00", "cgan", "lora_r4_private")}
    config["methods"]["selora_l1.00"]["expand_every"] = 2
    config["methods"]["cgan"]["steps"] = 3
    for dataset in (brats, picai):
        dataset["methods"] = ["lora_r4", "selora_l1.00", "cgan"]
    brats["methods"].append("lora_r4_private")  # the privacy defence, on one dataset
    config["generation"].update(images=20, steps=2, batch_size=10)
    for dataset in (brats, picai):
        dataset["classifier_methods"] = ["selora_l1.00", "cgan"]
    config["fid"].update(max_generated=8, kid_subsets=5)
    config["classifier"].update(budget={"steps": 2}, seeds=[0, 1])
    # the reader-study pack of the paper's pairing (selora_l1.00 against cgan) from 10 images per class and method
    # and 2 test slices per class
    config["reader_study"] = {"pairs_per_class": 4, "calibration_per_class": 2}
    return config


def snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "2", *args]


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The snakemake CLI of this interpreter on 2 cores in workdir, its output captured."""
    return subprocess.run(snakemake_command(*args), cwd=workdir, capture_output=True, text=True, env=env)


def copy_workflow(destination: Path) -> Path:
    """The files Snakemake needs, copied into destination (so a run there leaves the repository untouched)."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, destination / name)
    return destination


class BackgroundRun:
    """A Snakemake run (the CLI of this interpreter on 2 cores) started now and awaited later, so that other tests
    run meanwhile. Its output goes to workdir/snakemake.log: a pipe that nobody reads would fill and stall it."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.log = workdir / "snakemake.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(snakemake_command(*args), cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                            env=env)

    def wait(self) -> Path:
        """The workdir once the run has succeeded; a failed run fails the caller with the end of its output."""
        assert self.process.wait() == 0, self.log.read_text()[-3000:]
        return self.workdir

    def stop(self) -> None:
        """Ends the run if it is still going (a session cut short must not leave it running)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


def start_tiny_workflow(workdir: Path) -> BackgroundRun:
    """The complete DAG on tiny_config() in a fresh copy of the workflow, started; its config is workdir/tiny.yaml."""
    copy_workflow(workdir)
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(tiny_config()))
    return BackgroundRun(workdir, "--configfile", "tiny.yaml")


def job(rule: str, **wildcards: str) -> Job:
    return rule, tuple(sorted(wildcards.items()))


def dry_run(workdir: Path, *args: str) -> dict[Job, str]:
    """The jobs Snakemake's dry run (-n) plans in workdir, each with the reason Snakemake gives: {job: reason}."""
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = {}
    for rule, body in JOB_BLOCK.findall(result.stdout):
        fields = dict(line.strip().split(": ", 1) for line in body.splitlines())
        wildcards = fields["wildcards"].split(", ") if "wildcards" in fields else []
        jobs[job(rule, **dict(item.split("=", 1) for item in wildcards))] = fields["reason"]
    return jobs
