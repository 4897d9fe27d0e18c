"""The paper's StyleGAN3 baseline: the official NVlabs/stylegan3 code, fine-tuned from a pretrained pickle.

The official scripts run from the user's checkout with the interpreter of their own conda environment
(envs/stylegan3.yaml: Python 3.9, PyTorch 1.9, CUDA 11.1, as the checkout's environment.yml), because they need an
old PyTorch for their custom CUDA ops while this package needs Python 3.11; this module runs in the pipeline's
environment and only writes their inputs, builds their command lines, runs them and collects what they write.

The pretrained networks NVIDIA publishes (e.g. stylegan3-t-ffhqu-256x256.pkl) are unconditional, and train.py
--resume copies a pickle's tensors into the new networks without a shape check, so a conditional network
(--cond=True) cannot start from them. The plan therefore trains one unconditional network per class (healthy,
tumour), each resumed from the pickle on that class's slices and generating that class's half of the images:

0. pre-flight (CPU, before the method's GPU jobs on a dataset): the paths exist, the resolution suits the
   dataset, and the user's interpreter and checkout load the pickle and build the planned networks, which must take
   every one of its tensors (migros.gan.stylegan3_resume_check; an error names the config key to change);
1. per class (GPU): that class's training slices as a source folder of RGB PNGs at the training resolution (a power
   of two), which `dataset_tool.py` turns into the training ZIP; `train.py --cond=False --metrics=none` resumed from
   the pickle (nothing is downloaded) for `--kimg` thousand real images: iterations × batch / 1000, rounded up;
   `gen_images.py` with its final snapshot and the seeds of that class's generation prompts;
2. merge (CPU): the `seed<seed>.png` files of both classes resized to the dataset's image size as
   `images/<index>.png` and `manifest.csv`, like every other generated set, and the method's summary.
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
# One unconditional network per class, named in the rules' paths: {class name: label in the prompt tables}.
IMAGE_CLASSES = {"healthy": 0, "tumour": 1}
# Run as a script by the official env's interpreter, never imported here: it imports the official code.
RESUME_CHECK_SCRIPT = Path(__file__).with_name("stylegan3_resume_check.py")


class StyleGan3Error(RuntimeError):
    """The StyleGAN3 baseline cannot run here or one of the official scripts failed; the message says why."""


@dataclass(frozen=True)
class StyleGan3Settings(MethodSettings):
    """A `kind: stylegan3` entry of config `methods` (its keys without `kind`; defaults are in the schema)."""

    SECTION: ClassVar[str] = "methods.<name>"

    checkout: str  # the user's clone of NVlabs/stylegan3
    python: str  # interpreter of the env made from envs/stylegan3.yaml
    resume_pkl: str  # pretrained network pickle fine-tuned from
    # the architecture, which must be that of resume_pkl: train.py's --cfg, --cbase, --cmax, --map-depth (None:
    # train.py's default for the cfg) and the training resolution
    cfg: Literal["stylegan3-t", "stylegan3-r", "stylegan2"]
    cbase: int
    cmax: int
    map_depth: int | None
    resolution: int
    iterations: int
    batch: int
    batch_gpu: int | None
    gamma: float
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


def class_label(image_class: str) -> int:
    if image_class not in IMAGE_CLASSES:
        raise StyleGan3Error(f"unknown image class {image_class!r}; the classes are {list(IMAGE_CLASSES)}")
    return IMAGE_CLASSES[image_class]


def with_absolute_paths(settings: StyleGan3Settings) -> StyleGan3Settings:
    """The settings with checkout and pickle as absolute paths, since the official scripts run in the checkout. The
    interpreter is made absolute but not resolved: a venv's interpreter is a symlink whose target lacks the env."""
    return dataclasses.replace(
        settings, checkout=str(Path(settings.checkout).resolve()), resume_pkl=str(Path(settings.resume_pkl).resolve()),
        python=str(Path(settings.python).absolute()) if os.sep in settings.python else settings.python,
    )


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
            f"path there (docs/paper.md, 'StyleGAN3 baseline')"
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


def require_resolution(settings: StyleGan3Settings, name: str, dataset: str, image_size: int) -> None:
    """Stop unless the training resolution is a power of two and not below the dataset's image_size, to which the
    generated images are resized down."""
    resolution = settings.resolution
    suggestion = f"e.g. {1 << (image_size - 1).bit_length()}, with a pickle of that resolution"
    if resolution & (resolution - 1):
        raise StyleGan3Error(
            f"methods.{name}.resolution: {resolution} is not a power of two, at which StyleGAN trains; {suggestion}"
        )
    if resolution < image_size:
        raise StyleGan3Error(
            f"methods.{name}.resolution: {resolution} is below datasets.{dataset}.image_size ({image_size}); {suggestion}"
        )


# ---- the official command lines -----------------------------------------------------------------------------


def train_options(settings: StyleGan3Settings) -> list[str]:
    """train.py's options of the plan but --outdir and --data: an unconditional network fine-tuned from resume_pkl
    on one GPU with resume_pkl's architecture, no metrics (they download Inception). The pre-flight builds its
    networks from the same options."""
    options = [
        f"--cfg={settings.cfg}", "--gpus=1", f"--batch={settings.batch}", f"--gamma={settings.gamma}", "--cond=False",
        f"--mirror={settings.mirror}", f"--cbase={settings.cbase}", f"--cmax={settings.cmax}",
        f"--resume={settings.resume_pkl}", f"--kimg={settings.kimg}", f"--snap={settings.snap}",
        f"--seed={settings.seed}", "--metrics=none",
    ]
    if settings.map_depth is not None:
        options.append(f"--map-depth={settings.map_depth}")
    if settings.batch_gpu is not None:
        options.append(f"--batch-gpu={settings.batch_gpu}")
    return options


def dataset_tool_command(settings: StyleGan3Settings, source_dir: Path, zip_path: Path) -> list[str]:
    """dataset_tool.py: the source folder of one class's images to the training ZIP at the resolution."""
    return [
        settings.python, str(Path(settings.checkout) / "dataset_tool.py"),
        f"--source={source_dir}", f"--dest={zip_path}", f"--resolution={settings.resolution}x{settings.resolution}",
    ]


def train_command(settings: StyleGan3Settings, zip_path: Path, outdir: Path) -> list[str]:
    """train.py on one class's training ZIP, its runs in `outdir`."""
    return [
        settings.python, str(Path(settings.checkout) / "train.py"), f"--outdir={outdir}", f"--data={zip_path}",
        *train_options(settings),
    ]


def generate_command(settings: StyleGan3Settings, network_pkl: Path, seeds: list[int], outdir: Path) -> list[str]:
    """gen_images.py: one image `seed<seed:04d>.png` per seed from an unconditional network, without truncation."""
    return [
        settings.python, str(Path(settings.checkout) / "gen_images.py"),
        f"--network={network_pkl}", f"--seeds={','.join(str(seed) for seed in seeds)}", "--trunc=1",
        f"--outdir={outdir}",
    ]


def resume_check_command(settings: StyleGan3Settings, name: str, report_json: Path) -> list[str]:
    """The pre-flight's check of the pickle (migros.gan.stylegan3_resume_check), run by the official env's
    interpreter with the checkout and the plan's train.py options."""
    return [
        settings.python, str(RESUME_CHECK_SCRIPT), f"--checkout={settings.checkout}",
        f"--resume-pkl={settings.resume_pkl}", f"--resolution={settings.resolution}", f"--where=methods.{name}",
        f"--report={report_json}", "--", *train_options(settings),
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


def write_class_source(train_csv: Path, label: int, source_dir: Path, resolution: int) -> int:
    """The training slices of `label` as `source_dir/<i:05d>.png`, RGB at resolution² px (the pretrained networks
    are RGB), the folder dataset_tool.py reads; returns their number."""
    train = pd.read_csv(train_csv)
    rows = train[train.label == label]
    if rows.empty:
        raise StyleGan3Error(f"{train_csv}: no training slice of label {label}, whose network this job trains")
    if source_dir.exists():
        shutil.rmtree(source_dir)
    source_dir.mkdir(parents=True)
    for position, image_path in enumerate(rows.image):
        image = open_image(image_path, "RGB")
        image.resize((resolution, resolution), Image.LANCZOS).save(source_dir / f"{position:05d}.png")
    return len(rows)


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


def generated_file(folder: Path, seed: int) -> Path:
    """Where gen_images.py writes the image of `seed`."""
    return folder / f"seed{seed:04d}.png"


def collect_generated(prompts: pd.DataFrame, generated_dirs: dict[int, Path], images_dir: Path,
                      image_size: int) -> pd.DataFrame:
    """gen_images.py's `seed<seed:04d>.png` of each prompt row (from its label's folder) as
    `images_dir/<index:05d>.png`, RGB at image_size²; returns the manifest (file, prompt, label, seed)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for row in prompts.itertuples():
        image = open_image(generated_file(generated_dirs[int(row.label)], int(row.seed)), "RGB")
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.LANCZOS)
        path = images_dir / f"{row.index:05d}.png"
        image.save(path)
        rows.append({"file": str(path), "prompt": row.prompt, "label": row.label, "seed": row.seed})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


# ---- the stages ---------------------------------------------------------------------------------------------


def run_stylegan3_preflight(*, settings: StyleGan3Settings, name: str, dataset: str, image_size: int,
                            report_json: Path) -> None:
    """Stop before any GPU job of the method on the dataset unless the method's paths exist, its resolution suits
    the dataset's image_size and the planned networks take every tensor of the pickle, as the user's interpreter and
    checkout load it; the accepted pickle's architecture goes to `report_json`."""
    require_checkout(settings, name)
    require_resolution(settings, name, dataset, image_size)
    settings = with_absolute_paths(settings)
    report_json = report_json.resolve()
    report_json.unlink(missing_ok=True)
    run_command(resume_check_command(settings, name, report_json), Path(settings.checkout))
    report = json.loads(report_json.read_text())
    if not report["accepted"]:
        report_json.unlink()  # the job's output exists only for an accepted pickle
        raise StyleGan3Error(report["error"])


def run_stylegan3_class_stage(
    *,
    settings: StyleGan3Settings,
    name: str,
    image_class: str,
    train_csv: Path,
    prompts_csv: Path,
    work_dir: Path,
    generated_dir: Path,
    summary_json: Path,
) -> None:
    """Fine-tune one unconditional network on the training slices of `image_class` and generate the images of that
    class's generation prompts into `generated_dir` (module docstring, step 1)."""
    require_gpu()  # before anything is written
    label = class_label(image_class)
    seeds = seeds_by_class(pd.read_csv(prompts_csv)).get(label)
    if not seeds:
        raise StyleGan3Error(f"{prompts_csv}: no generation prompt of label {label} ({image_class})")
    settings = with_absolute_paths(settings)
    checkout, work_dir = Path(settings.checkout), work_dir.resolve()
    source_dir, zip_path, train_dir = work_dir / "source", work_dir / "dataset.zip", work_dir / "training"
    training_images = write_class_source(train_csv, label, source_dir, settings.resolution)
    zip_path.unlink(missing_ok=True)
    run_command(dataset_tool_command(settings, source_dir, zip_path), checkout)
    if train_dir.exists():
        shutil.rmtree(train_dir)  # a rerun trains afresh from resume_pkl, not into a half-finished run
    start = time.monotonic()
    run_command(train_command(settings, zip_path, train_dir), checkout)
    training_seconds = time.monotonic() - start
    network_pkl = final_snapshot(train_dir)
    generated_dir = generated_dir.resolve()
    if generated_dir.exists():
        shutil.rmtree(generated_dir)
    run_command(generate_command(settings, network_pkl, seeds, generated_dir), checkout)
    if missing := [seed for seed in seeds if not generated_file(generated_dir, seed).is_file()]:
        raise StyleGan3Error(f"gen_images.py wrote no image for seed(s) {missing[:5]} in {generated_dir}")
    summary = {
        "method": name,
        "class": image_class,
        "label": label,
        "steps": settings.iterations,
        "seconds_this_run": round(training_seconds, 1),
        "kimg": settings.kimg,
        "network_pkl": str(network_pkl),
        "training_images": training_images,
        "generated_images": len(seeds),
    }
    summary_json.write_text(json.dumps(summary, indent=2))


def run_stylegan3_merge_stage(
    *,
    settings: StyleGan3Settings,
    name: str,
    prompts_csv: Path,
    class_outputs: dict[str, tuple[Path, Path]],
    image_size: int,
    images_dir: Path,
    manifest_csv: Path,
    summary_json: Path,
) -> None:
    """Both classes' generated images as the method's generated set and its summary (module docstring, step 2);
    `class_outputs`: {class name: (its generated folder, its summary.json)}."""
    if set(class_outputs) != set(IMAGE_CLASSES):
        raise StyleGan3Error(f"the merge needs the networks of {list(IMAGE_CLASSES)}, got {sorted(class_outputs)}")
    generated_dirs = {class_label(image_class): folder for image_class, (folder, _) in class_outputs.items()}
    networks = {image_class: json.loads(summary.read_text()) for image_class, (_, summary) in class_outputs.items()}
    manifest = collect_generated(pd.read_csv(prompts_csv), generated_dirs, images_dir, image_size)
    manifest.to_csv(manifest_csv, index=False)
    summary = {
        "method": name,
        "kind": "stylegan3",
        "steps": settings.iterations,  # of each class's network
        "seconds_this_run": round(sum(network["seconds_this_run"] for network in networks.values()), 1),
        "batch": settings.batch,
        "kimg": settings.kimg,
        "resume_pkl": settings.resume_pkl,
        "networks": networks,
        "training_images": sum(network["training_images"] for network in networks.values()),
        "generated_images": len(manifest),
        "settings": dataclasses.asdict(settings),
    }
    summary_json.write_text(json.dumps(summary, indent=2))
