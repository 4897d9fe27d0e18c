"""The slice stage: pick one slice per case with the dataset's loader, split, resize and write PNGs + metadata."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from migros.data import dataset_module
from migros.data.records import CaseSlice, DatasetError, ExcludedCase
from migros.settings import StageSettings

log = logging.getLogger(__name__)

METADATA_COLUMNS = [
    "case", "patient", "split", "label", "slice_index", "lesion_area_px", "lesion_area_fraction",
    "bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max", "image", "mask", "source_file", "skipped_checks",
]
SKIPPED_CHECKS_SEPARATOR = "; "
SPLITS = ("train", "test", "reserve", "unused")


@dataclass(frozen=True)
class SplitSettings:
    train: int
    test: int
    seed: int
    reserve: int  # the positive control's real cases (migros.data.reserve)


@dataclass(frozen=True)
class SliceSettings(StageSettings):
    """The keys of a `datasets` entry that change its slices, so that e.g. prompt settings do not rerun them."""

    SECTION = "datasets.<name> (slices)"
    loader: str
    image_size: int
    intensity_percentiles: tuple[float, float]
    field_of_view_mm: tuple[float, float] | None  # None: the field of view is not checked
    split: SplitSettings


def load_cases(loader: str, root: Path, intensity_percentiles, fov_mm=None) -> Iterator[CaseSlice | ExcludedCase]:
    """Run a dataset's loader over its cases one at a time, with a progress bar."""
    module = dataset_module(loader)
    for case in tqdm(module.find_cases(Path(root)), desc=f"{loader} cases", unit="case"):
        yield module.load_case(case, intensity_percentiles, fov_mm)


def balanced_split(cases: pd.DataFrame, n_train: int, n_test: int, seed: int, n_reserve: int = 0) -> dict[str, str]:
    """Case → 'train' | 'test' | 'reserve' | 'unused', one patient at a time; each split but unused has equal
    positives and negatives.

    `cases` has columns case, patient, label. All studies of a patient go to the same split, so that no patient
    is in two of train, test and reserve. Patients are drawn at random (seeded) in three groups, in this order:
    patients with both positive and negative studies, then patients with only negative and then only positive
    studies. A patient goes to the first of train, test and reserve that still has a place for each of its
    studies' labels, else (all its studies) to unused. A patient with a positive and a negative study thus brings
    one case of each label to one split, each study keeping its own label; such patients are drawn first so that
    they are not left unused for want of room. With one study per patient this is the same draw as a per-case
    split, and a reserve takes its cases from those that train and test left unused.
    """
    rng = np.random.default_rng(seed)
    sizes = {"train": n_train, "test": n_test, "reserve": n_reserve}
    places = {name: {0: size // 2, 1: size // 2} for name, size in sizes.items()}
    labels_of = cases.groupby("patient").label.agg(lambda labels: tuple(sorted(labels)))
    groups = (
        [patient for patient, labels in labels_of.items() if len(set(labels)) == 2],
        [patient for patient, labels in labels_of.items() if set(labels) == {0}],
        [patient for patient, labels in labels_of.items() if set(labels) == {1}],
    )
    split_of_patient = {}
    for patients in groups:
        for patient in rng.permutation(sorted(patients)):
            needs = {label: labels_of[patient].count(label) for label in (0, 1)}
            split_of_patient[patient] = next(
                (name for name, free in places.items() if all(needs[label] <= free[label] for label in (0, 1))),
                "unused",
            )
            if split_of_patient[patient] != "unused":
                for label in (0, 1):
                    places[split_of_patient[patient]][label] -= needs[label]
    if any(free for free_by_label in places.values() for free in free_by_label.values()):
        needed = sum(size // 2 for size in sizes.values())
        positives = int(cases.label.sum())
        asked = " + ".join(f"{size} {name}" for name, size in sizes.items() if size)
        raise DatasetError(
            f"a balanced split of {asked} cases needs {needed} positive and {needed} negative cases; the dataset "
            f"has {positives} positive and {len(cases) - positives} negative usable cases from {len(labels_of)} "
            "patients (the studies of one patient are never divided between splits)"
        )
    return {case: split_of_patient[patient] for case, patient in zip(cases.case, cases.patient)}


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Centre the slice on a square canvas so that resizing keeps the anatomy's aspect ratio."""
    rows, cols = image.shape
    size = max(rows, cols)
    top, left = (size - rows) // 2, (size - cols) // 2
    return np.pad(image, ((top, size - rows - top), (left, size - cols - left)))


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image with area interpolation (anti-aliased), mask with nearest neighbour (stays binary)."""
    image = cv2.resize(pad_to_square(image), (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(pad_to_square(mask.astype(np.uint8)), (size, size), interpolation=cv2.INTER_NEAREST)
    return np.clip(image, 0.0, 1.0), mask.astype(bool)


def lesion_geometry(mask: np.ndarray) -> dict:
    rows, cols = np.nonzero(mask)
    area = int(mask.sum())
    geometry = {"lesion_area_px": area, "lesion_area_fraction": area / mask.size}
    bbox = (rows.min(), cols.min(), rows.max(), cols.max()) if area else (None,) * 4
    geometry.update(zip(("bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max"), bbox))
    return geometry


def resize_case(item: CaseSlice, size: int) -> CaseSlice | ExcludedCase:
    """The slice resized; a positive whose lesion vanishes at this size is excluded, never silently relabelled."""
    image, mask = resize_pair(item.image, item.mask, size)
    if item.label and not mask.any():
        return ExcludedCase(item.case, item.source_file, f"lesion smaller than one pixel at {size} px")
    return replace(item, image=image, mask=mask)


def write_slice(item: CaseSlice, images_dir: Path, masks_dir: Path) -> dict:
    """Write the image and mask PNGs of one case and return its metadata row (without the split)."""
    image_path, mask_path = images_dir / f"{item.case}.png", masks_dir / f"{item.case}.png"
    cv2.imwrite(str(image_path), np.round(item.image * 255).astype(np.uint8))
    cv2.imwrite(str(mask_path), item.mask.astype(np.uint8) * 255)
    return {
        "case": item.case, "patient": item.patient, "label": item.label, "slice_index": item.slice_index,
        **lesion_geometry(item.mask), "image": str(image_path), "mask": str(mask_path),
        "source_file": item.source_file, "skipped_checks": SKIPPED_CHECKS_SEPARATOR.join(item.skipped_checks),
    }


def excluded_table(excluded: list[ExcludedCase]) -> pd.DataFrame:
    return pd.DataFrame([vars(item) for item in excluded], columns=["case", "source_file", "reason"])


def skipped_check_counts(metadata: pd.DataFrame) -> pd.Series:
    """Usable cases per check that could not run (an optional file absent), by the check's description."""
    # read back from CSV, a column with no skipped check is all NaN (float): make it text first
    reasons = metadata.skipped_checks.astype("string").fillna("").str.split(SKIPPED_CHECKS_SEPARATOR).explode()
    return reasons[reasons != ""].value_counts().rename("cases")


def split_counts(metadata: pd.DataFrame) -> pd.DataFrame:
    """Patients, studies (cases) and labels per split."""
    counts = metadata.groupby("split").agg(
        patients=("patient", "nunique"), studies=("case", "size"), tumour=("label", "sum")
    )
    counts["healthy"] = counts.studies - counts.tumour
    return counts.reindex([name for name in SPLITS if name in counts.index])


def stage_summary(metadata: pd.DataFrame, excluded: pd.DataFrame) -> list[str]:
    """What the rule prints when it ends: counts per split, exclusions and every check that was skipped."""
    lines = [f"{len(metadata)} usable cases ({int(metadata.label.sum())} positive), {len(excluded)} excluded"]
    for name, row in split_counts(metadata).iterrows():
        lines.append(f"  {name}: {row.patients} patients, {row.studies} studies ({row.tumour} tumour, {row.healthy} healthy)")
    for reason, count in excluded.groupby("reason").size().items():
        lines.append(f"  excluded, {reason}: {count}")
    for reason, count in skipped_check_counts(metadata).items():
        lines.append(f"  CHECK SKIPPED for {count} usable cases: {reason}")
    return lines


def run_slice_stage(
    settings: SliceSettings, root: Path, images_dir: Path, masks_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Everything the `slices` rule does; returns (metadata, excluded, summary lines) for the caller to write.

    Each case is loaded, resized and written before the next is read, so memory does not grow with the number
    of cases (the split needs only the labels)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    rows, excluded, too_small = [], [], []
    for result in load_cases(settings.loader, root, settings.intensity_percentiles, settings.field_of_view_mm):
        if isinstance(result, ExcludedCase):
            excluded.append(result)
            continue
        result = resize_case(result, settings.image_size)
        if isinstance(result, ExcludedCase):
            too_small.append(result)
        else:
            rows.append(write_slice(result, images_dir, masks_dir))
    metadata = pd.DataFrame(rows, columns=[column for column in METADATA_COLUMNS if column != "split"])
    split = balanced_split(metadata, settings.split.train, settings.split.test, settings.split.seed,
                           settings.split.reserve)
    metadata.insert(METADATA_COLUMNS.index("split"), "split", metadata.case.map(split))
    excluded = excluded_table(excluded + too_small)
    summary = stage_summary(metadata, excluded)
    for line in summary:
        (log.warning if "CHECK SKIPPED" in line else log.info)("%s", line)
    return metadata, excluded, summary
