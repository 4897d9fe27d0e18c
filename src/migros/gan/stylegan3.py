"""The paper's StyleGAN3 baseline: the official NVlabs/stylegan3 code, fine-tuned from a pretrained pickle.

The official scripts run from the user's checkout with the interpreter of their own conda environment
(envs/stylegan3.yaml: Python 3.9, PyTorch 1.9, CUDA 11.1, as the checkout's environment.yml), because they need an
old PyTorch for their custom CUDA ops while this package needs Python 3.11; this module runs in the pipeline's
environment and only writes their inputs, builds their command lines, runs them and collects what they write:

1. the training slices of train_prompts.csv as a source folder (RGB PNGs at the training resolution, a power of
   two, and `dataset.json` with their class labels) that `dataset_tool.py` turns into the training ZIP;
2. `train.py --cond=True --metrics=none` resumed from the user's pickle (nothing is downloaded), for `--kimg`
   thousand real images: iterations × batch / 1000, rounded up;
3. `gen_images.py` with the final snapshot, once per class (`--class`) with that class's per-image seeds;
4. its `seed<seed>.png` files resized to the dataset's image size as `images/<index>.png` and `manifest.csv`, like
   every other generated set.
"""

import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd
from PIL import Image

from migros.images import open_image
from migros.settings import MethodSettings

SCRIPTS = ("dataset_tool.py", "train.py", "gen_images.py")
MANIFEST_COLUMNS = ["file", "prompt", "label", "seed"]


class StyleGan3Error(RuntimeError):
    """The StyleGAN3 baseline cannot run here or one of the official scripts failed; the message says why."""


@dataclass(frozen=True)
class StyleGan3Settings(MethodSettings):
    """A `kind: stylegan3` entry of config `methods` (its keys without `kind`; defaults are in the schema)."""

    SECTION: ClassVar[str] = "methods.<name>"

    checkout: str  # the user's clone of NVlabs/stylegan3
    python: str  # interpreter of the env made from envs/stylegan3.yaml
    resume_pkl: str  # pretrained network pickle fine-tuned from
    cfg: Literal["stylegan3-t", "stylegan3-r", "stylegan2"]
    iterations: int
    batch: int
    batch_gpu: int | None
    gamma: float
    resolution: int
    mirror: bool
    snap: int
    seed: int

    @property
    def kimg(self) -> int:
        return kimg_for(self.iterations, self.batch)


def kimg_for(iterations: int, batch: int) -> int:
    """train.py's --kimg for `iterations` optimizer steps of `batch` images: it counts training length in thousands
    of real images shown, so ceil(iterations × batch / 1000), at least 1."""
    if iterations < 1 or batch < 1:
        raise ValueError(f"iterations ({iterations}) and batch ({batch}) must be positive")
    return max(1, math.ceil(iterations * batch / 1000))


# ---- checks before any work ---------------------------------------------------------------------------------


def require_gpu() -> None:
    """Stop unless CUDA is available: StyleGAN3's custom ops and its training only run on an NVIDIA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise StyleGan3Error(
            "the stylegan3 method needs an NVIDIA GPU (torch.cuda.is_available() is False here): the official "
            "StyleGAN3 code trains and generates with custom CUDA ops. Run this method in a GPU run, e.g. "
            "config/paper.yaml on the T4 cluster (`snakemake --profile slurm --configfile config/paper.yaml`), and "
            "leave it out of the `methods` of datasets run on a CPU"
        )


def require_checkout(settings: StyleGan3Settings, name: str = "<name>") -> None:
    """Stop unless the checkout holds the three official scripts and the interpreter and pickle exist."""
    where = f"methods.{name}"
    checkout = Path(settings.checkout)
    if not checkout.is_dir():
        raise StyleGan3Error(
            f"{where}.checkout: {checkout} is not a folder; clone https://github.com/NVlabs/stylegan3 and set its "
            f"path there (README, 'StyleGAN3 baseline')"
        )
    if missing := [script for script in SCRIPTS if not (checkout / script).is_file()]:
        raise StyleGan3Error(f"{where}.checkout: {checkout} lacks {missing}; is it a clone of NVlabs/stylegan3?")
    python = settings.python
    if not (Path(python).is_file() if os.sep in python else shutil.which(python)):
        raise StyleGan3Error(
            f"{where}.python: no interpreter {python}; create the official environment "
            f"(`conda env create -f envs/stylegan3.yaml`) and give its bin/python"
        )
    if not Path(settings.resume_pkl).is_file():
        raise StyleGan3Error(
            f"{where}.resume_pkl: {settings.resume_pkl} is missing; download a pretrained network pickle (e.g. "
            f"stylegan3-t-ffhqu-256x256.pkl from NVIDIA NGC) and set its path there; train.py is not let download"
        )


def require_resolution(resolution: int, image_size: int) -> None:
    if resolution < image_size or resolution & (resolution - 1):
        raise StyleGan3Error(
            f"resolution {resolution}: StyleGAN trains at a power of two, and at least the dataset's image_size "
            f"({image_size}); e.g. {1 << (image_size - 1).bit_length()}"
        )


# ---- the official command lines -----------------------------------------------------------------------------


def dataset_tool_command(settings: StyleGan3Settings, source_dir: Path, zip_path: Path) -> list[str]:
    """dataset_tool.py: the source folder (images + dataset.json labels) to the training ZIP at the resolution."""
    return [
        settings.python, str(Path(settings.checkout) / "dataset_tool.py"),
        f"--source={source_dir}", f"--dest={zip_path}", f"--resolution={settings.resolution}x{settings.resolution}",
    ]


def train_command(settings: StyleGan3Settings, zip_path: Path, outdir: Path) -> list[str]:
    """train.py: a conditional network fine-tuned from resume_pkl on one GPU, no metrics (they download Inception)."""
    command = [
        settings.python, str(Path(settings.checkout) / "train.py"),
        f"--outdir={outdir}", f"--cfg={settings.cfg}", f"--data={zip_path}", "--gpus=1",
        f"--batch={settings.batch}", f"--gamma={settings.gamma}", "--cond=True", f"--mirror={settings.mirror}",
        f"--resume={settings.resume_pkl}", f"--kimg={settings.kimg}", f"--snap={settings.snap}",
        f"--seed={settings.seed}", "--metrics=none",
    ]
    if settings.batch_gpu is not None:
        command.append(f"--batch-gpu={settings.batch_gpu}")
    return command


def generate_command(settings: StyleGan3Settings, network_pkl: Path, seeds: list[int], label: int,
                     outdir: Path) -> list[str]:
    """gen_images.py: one image `seed<seed:04d>.png` per seed of class `label`, without truncation."""
    return [
        settings.python, str(Path(settings.checkout) / "gen_images.py"),
        f"--network={network_pkl}", f"--seeds={','.join(str(seed) for seed in seeds)}", f"--class={label}",
        "--trunc=1", f"--outdir={outdir}",
    ]


def run_command(command: list[str], cwd: Path) -> None:
    """Run one official script, its output into this job's log; a failure names the command."""
    print(f"$ {shlex.join(command)}", flush=True)
    sys.stderr.flush()
    # The official env's interpreter must not see this package's PYTHONPATH / PYTHONHOME.
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        subprocess.run(command, cwd=cwd, env=environment, check=True, stdout=sys.stdout, stderr=subprocess.STDOUT)
    except subprocess.CalledProcessError as error:
        raise StyleGan3Error(
            f"{Path(command[1]).name} failed (exit status {error.returncode}); its output is above in the log. "
            f"Command: {shlex.join(command)}"
        ) from None
    except OSError as error:
        raise StyleGan3Error(f"cannot run {command[0]} ({error}); command: {shlex.join(command)}") from None
    finally:
        sys.stdout.flush()


# ---- files in and out ---------------------------------------------------------------------------------------


def write_dataset_source(train_csv: Path, source_dir: Path, resolution: int) -> pd.DataFrame:
    """The training slices as `source_dir/<i:05d>.png` (RGB, resolution² px, as the pretrained networks are RGB) and
    `dataset.json` {"labels": [[file name relative to source_dir, label], ...]}, which dataset_tool.py reads for
    class labels. Returns the table of file names and labels."""
    train = pd.read_csv(train_csv)
    if set(train.label) != {0, 1}:
        raise StyleGan3Error(f"{train_csv}: a conditional StyleGAN3 needs slices of both labels 0 and 1, has {sorted(set(train.label))}")
    if source_dir.exists():
        shutil.rmtree(source_dir)
    source_dir.mkdir(parents=True)
    rows = []
    for position, row in enumerate(train.itertuples()):
        name = f"{position:05d}.png"
        image = open_image(row.image, "RGB")
        image.resize((resolution, resolution), Image.LANCZOS).save(source_dir / name)
        rows.append({"name": name, "label": int(row.label)})
    table = pd.DataFrame(rows, columns=["name", "label"])
    labels = [[name, label] for name, label in zip(table.name, table.label)]
    (source_dir / "dataset.json").write_text(json.dumps({"labels": labels}))
    return table


def final_snapshot(outdir: Path) -> Path:
    """The last `network-snapshot-<kimg>.pkl` of the newest run folder (`<run id:05d>-<desc>`) train.py made in
    `outdir`; train.py always writes one when training ends."""
    runs = [path for path in outdir.glob("*") if path.is_dir() and re.match(r"\d+-", path.name)] if outdir.is_dir() else []
    if not runs:
        raise StyleGan3Error(f"{outdir}: train.py made no run folder")
    newest = max(runs, key=lambda path: int(path.name.split("-")[0]))
    snapshots = sorted(newest.glob("network-snapshot-*.pkl"))
    if not snapshots:
        raise StyleGan3Error(f"{newest}: train.py wrote no network-snapshot-*.pkl; see its log.txt there")
    return snapshots[-1]


def seeds_by_class(prompts: pd.DataFrame) -> dict[int, list[int]]:
    """{label: seeds of that label's images}; gen_images.py names files by seed, so seeds must differ in a class."""
    seeds = {}
    for label, group in prompts.groupby("label", sort=True):
        values = [int(seed) for seed in group.seed]
        if len(set(values)) != len(values):
            raise StyleGan3Error(f"generation prompts of label {label} repeat a seed; gen_images.py names files by seed")
        if min(values) < 0 or max(values) >= 2**32:
            raise StyleGan3Error(f"generation seeds must lie in [0, 2**32) for gen_images.py, label {label} has {min(values)}..{max(values)}")
        seeds[int(label)] = values
    return seeds


def collect_generated(prompts: pd.DataFrame, generated_dirs: dict[int, Path], images_dir: Path,
                      image_size: int) -> pd.DataFrame:
    """gen_images.py's `seed<seed:04d>.png` of each prompt row (from its label's folder) as
    `images_dir/<index:05d>.png`, RGB at image_size²; returns the manifest (file, prompt, label, seed)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for row in prompts.itertuples():
        source = generated_dirs[int(row.label)] / f"seed{int(row.seed):04d}.png"
        image = open_image(source, "RGB")
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.LANCZOS)
        path = images_dir / f"{row.index:05d}.png"
        image.save(path)
        rows.append({"file": str(path), "prompt": row.prompt, "label": row.label, "seed": row.seed})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


# ---- the stage ----------------------------------------------------------------------------------------------


def run_stylegan3_stage(
    *,
    settings: StyleGan3Settings,
    name: str,
    train_csv: Path,
    prompts_csv: Path,
    image_size: int,
    work_dir: Path,
    images_dir: Path,
    manifest_csv: Path,
    summary_json: Path,
) -> None:
    """Fine-tune the official StyleGAN3 on the training slices and generate the prompts' images (module docstring)."""
    require_gpu()  # before anything is written
    require_checkout(settings, name)
    require_resolution(settings.resolution, image_size)
    prompts = pd.read_csv(prompts_csv)
    seeds = seeds_by_class(prompts)
    work_dir = work_dir.resolve()
    checkout = Path(settings.checkout).resolve()
    # the official scripts run in the checkout, so every path they are given is absolute (python not resolved: a
    # venv's interpreter is a symlink whose target lacks the env)
    settings = dataclasses.replace(
        settings, checkout=str(checkout), resume_pkl=str(Path(settings.resume_pkl).resolve()),
        python=str(Path(settings.python).absolute()) if os.sep in settings.python else settings.python,
    )
    source_dir, zip_path, train_dir = work_dir / "source", work_dir / "dataset.zip", work_dir / "training"
    train = write_dataset_source(train_csv, source_dir, settings.resolution)
    if missing := sorted(set(seeds) - set(train.label)):
        raise StyleGan3Error(f"the generation prompts ask for label(s) {missing}, absent from the training slices")
    zip_path.unlink(missing_ok=True)
    run_command(dataset_tool_command(settings, source_dir, zip_path), checkout)
    if train_dir.exists():
        shutil.rmtree(train_dir)  # a rerun trains afresh from resume_pkl, not into a half-finished run
    start = time.monotonic()
    run_command(train_command(settings, zip_path, train_dir), checkout)
    training_seconds = time.monotonic() - start
    network_pkl = final_snapshot(train_dir)
    generated_dirs = {}
    for label, label_seeds in seeds.items():
        generated_dirs[label] = work_dir / "generated" / f"class{label}"
        if generated_dirs[label].exists():
            shutil.rmtree(generated_dirs[label])
        run_command(generate_command(settings, network_pkl, label_seeds, label, generated_dirs[label]), checkout)
    manifest = collect_generated(prompts, generated_dirs, images_dir, image_size)
    manifest.to_csv(manifest_csv, index=False)
    summary = {
        "method": name,
        "kind": "stylegan3",
        "steps": settings.iterations,
        "seconds_this_run": round(training_seconds, 1),
        "batch": settings.batch,
        "kimg": settings.kimg,
        "network_pkl": str(network_pkl),
        "resume_pkl": settings.resume_pkl,
        "training_images": len(train),
        "generated_images": len(manifest),
        "settings": dataclasses.asdict(settings),
    }
    summary_json.write_text(json.dumps(summary, indent=2))
