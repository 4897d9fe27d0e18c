"""Benchmark (not a test): peak memory and wall time of the PI-CAI slice stage for growing numbers of cases.

    python tests/benchmarks/slices_memory.py [--cases 100 500 1500] [--distinct 6] [--workdir DIR]

Builds PI-CAI-layout studies at a realistic T2W size (384 x 384 x 19-24 voxels of 0.5 x 0.5 x 3 mm, int16, with
expert lesion and whole-gland masks and a marksheet; one patient in 25 has two studies). Only `--distinct`
different volumes are written; every study is a hard link to one of them under its own patient and study name,
so 1,500 studies cost the disk of a few while the loader still opens, reads and decodes each file. Each N runs
in a fresh subprocess (the same call as the `slices` rule) and reports its peak resident memory (ru_maxrss) and
wall time. Goal: peak memory flat in N (under 2 GB at 1,500 cases), time linear.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from migros.data import picai
from migros.data.slices import SliceSettings, run_slice_stage

SPACING = (0.5, 0.5, 3.0)  # x, y, z mm: 384 px x 0.5 mm = 192 mm, inside the paper's accepted field of view
IN_PLANE = 384
FOV_MM = (150.0, 260.0)
SECOND_STUDY_EVERY = 25


def write_image(path: Path, array_zyx: np.ndarray, compress: bool) -> None:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), compress)


def write_templates(folder: Path, distinct: int) -> list[dict]:
    """`distinct` studies (half with a lesion), each a T2W .mha and two .nii.gz masks; returns their files."""
    templates = []
    for index in range(distinct):
        rng = np.random.default_rng(index)
        depth = 19 + index % 6
        z, y, x = np.ogrid[:depth, :IN_PLANE, :IN_PLANE]
        body = ((y - IN_PLANE / 2) / 170) ** 2 + ((x - IN_PLANE / 2) / 180) ** 2 < 1
        t2w = np.where(body, 300 + 60 * rng.standard_normal((depth, IN_PLANE, IN_PLANE)), 0).astype(np.int16)
        gland = (((y - 192) / 40) ** 2 + ((x - 192) / 50) ** 2 + ((z - depth / 2) / (depth / 3)) ** 2 < 1).astype(np.uint8)
        lesion = np.zeros_like(gland)
        positive = index % 2 == 1
        if positive:
            lesion[depth // 2 - 1 : depth // 2 + 2, 180:200, 175:195] = 3
            t2w[lesion > 0] = 120
        files = {"t2w": folder / f"{index}_t2w.mha", "lesion": folder / f"{index}_lesion.nii.gz", "gland": folder / f"{index}_gland.nii.gz"}
        write_image(files["t2w"], t2w, compress=False)  # the release's T2W files are uncompressed
        write_image(files["lesion"], lesion, compress=True)
        write_image(files["gland"], gland, compress=True)
        templates.append({**files, "positive": positive})
    return templates


def build_dataset(root: Path, n_cases: int, templates: list[dict]) -> None:
    """n_cases studies in the PI-CAI release layout, hard links to the templates in turn."""
    rows, patient = [], 10000
    for index in range(n_cases):
        repeat = index % SECOND_STUDY_EVERY == 1  # this study is the previous patient's second
        patient += 0 if repeat else 1
        study = 1000000 + index
        case = f"{patient}_{study}"
        template = templates[index % len(templates)]
        targets = {
            "t2w": root / f"picai_public_images_fold{patient % 5}" / str(patient) / f"{case}_t2w.mha",
            "lesion": root / picai.EXPERT_MASKS / f"{case}.nii.gz",
            "gland": root / picai.GLAND_MASKS / f"{case}.nii.gz",
        }
        for kind, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(template[kind], target)
        rows.append({"patient_id": patient, "study_id": study, "case_csPCa": "YES" if template["positive"] else "NO"})
    (root / picai.MARKSHEET).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / picai.MARKSHEET, index=False)


def measure(root: Path, n_cases: int) -> None:
    """Child process: the slice stage as the rule runs it, then peak RSS (MB) and wall seconds."""
    start = time.perf_counter()
    settings = SliceSettings.from_config({
        "loader": "picai", "image_size": 224, "intensity_percentiles": [0.5, 99.5], "field_of_view_mm": FOV_MM,
        "split": {"train": 2 * (n_cases // 8), "test": 2 * (n_cases // 16), "reserve": 0, "seed": 0},
    })
    metadata, _, _ = run_slice_stage(settings, root, root / "out/images", root / "out/masks")
    seconds = time.perf_counter() - start
    assert len(metadata) == n_cases, f"{len(metadata)} of {n_cases} cases usable"
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {seconds:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[100, 500, 1500])
    parser.add_argument("--distinct", type=int, default=6)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the studies (default: a temporary folder)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process: the dataset to run on
    arguments = parser.parse_args()
    if arguments.measure:
        measure(arguments.measure, arguments.cases[0])
        return
    with tempfile.TemporaryDirectory(dir=arguments.workdir) as workdir:
        templates = write_templates(Path(workdir) / "templates", arguments.distinct)
        print(f"{'cases':>6} {'peak MB':>8} {'seconds':>8} {'s/case':>7}")
        for n_cases in arguments.cases:
            root = Path(workdir) / f"picai_{n_cases}"
            build_dataset(root, n_cases, templates)
            child = subprocess.run(
                [sys.executable, __file__, "--measure", str(root), "--cases", str(n_cases)],
                capture_output=True, text=True, check=False,
            )
            if child.returncode:
                sys.exit(f"N = {n_cases} failed:\n{child.stderr[-3000:]}")
            peak_mb, seconds = map(float, child.stdout.split()[-2:])
            print(f"{n_cases:>6} {peak_mb:>8.0f} {seconds:>8.1f} {seconds / n_cases:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
