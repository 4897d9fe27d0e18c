"""The slice stage: pick one slice per case with the dataset's loader, split, resize and write PNGs + metadata."""

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from migros.data import brats, picai
from migros.data.records import CaseSlice, DatasetError, ExcludedCase

log = logging.getLogger(__name__)

METADATA_COLUMNS = [
    "case", "split", "label", "slice_index", "lesion_area_px", "lesion_area_fraction",
    "bbox_row_min", "bbox_col_min", "bbox_row_max", "bbox_col_max", "image", "mask", "source_file",
]


def load_dataset(loader: str, root: Path, intensity_percentiles, fov_mm=None) -> tuple[list[CaseSlice], list[ExcludedCase]]:
    """Run a dataset's loader over all its cases, with a progress bar."""
    if loader == "brats":
        module, load_case = brats, partial(brats.load_case, intensity_percentiles=intensity_percentiles)
    elif loader == "picai":
        module, load_case = picai, partial(picai.load_case, intensity_percentiles=intensity_percentiles, fov_mm=fov_mm)
    else:
        raise ValueError(f"unknown loader {loader!r}: expected 'brats' or 'picai'")
    kept, excluded = [], []
    for case in tqdm(module.find_cases(Path(root)), desc=f"{loader} cases", unit="case"):
        result = load_case(case)
        (excluded if isinstance(result, ExcludedCase) else kept).append(result)
    return kept, excluded


def balanced_split(slices: list[CaseSlice], n_train: int, n_test: int, seed: int) -> dict[str, str]:
    """Case → 'train' | 'test' | 'unused'; each split has equal positives and negatives, drawn at random."""
    rng = np.random.default_rng(seed)
    split = {item.case: "unused" for item in slices}
    for label in (0, 1):
        cases = sorted(item.case for item in slices if item.label == label)
        needed = n_train // 2 + n_test // 2
        if len(cases) < needed:
            positives = sum(item.label for item in slices)
            raise DatasetError(
                f"a balanced split of {n_train} train + {n_test} test cases needs {needed} positive and {needed} "
                f"negative cases; the dataset has {positives} positive and {len(slices) - positives} negative usable cases"
            )
        chosen = rng.permutation(cases)[:needed]
        for case in chosen[: n_train // 2]:
            split[case] = "train"
        for case in chosen[n_train // 2 :]:
            split[case] = "test"
    return split


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


def resize_cases(slices: list[CaseSlice], size: int) -> tuple[list[CaseSlice], list[ExcludedCase]]:
    """Resize every slice; a positive whose lesion vanishes at this size is excluded, never silently relabelled."""
    resized, excluded = [], []
    for item in slices:
        image, mask = resize_pair(item.image, item.mask, size)
        if item.label and not mask.any():
            excluded.append(ExcludedCase(item.case, item.source_file, f"lesion smaller than one pixel at {size} px"))
        else:
            resized.append(replace(item, image=image, mask=mask))
    return resized, excluded


def write_slices(slices: list[CaseSlice], split: dict[str, str], images_dir: Path, masks_dir: Path) -> pd.DataFrame:
    """Write image and mask PNGs for every usable case and return the metadata table."""
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in slices:
        image_path, mask_path = images_dir / f"{item.case}.png", masks_dir / f"{item.case}.png"
        cv2.imwrite(str(image_path), np.round(item.image * 255).astype(np.uint8))
        cv2.imwrite(str(mask_path), item.mask.astype(np.uint8) * 255)
        rows.append(
            {
                "case": item.case, "split": split[item.case], "label": item.label, "slice_index": item.slice_index,
                **lesion_geometry(item.mask), "image": str(image_path), "mask": str(mask_path),
                "source_file": item.source_file,
            }
        )
    return pd.DataFrame(rows, columns=METADATA_COLUMNS)


def excluded_table(excluded: list[ExcludedCase]) -> pd.DataFrame:
    return pd.DataFrame([vars(item) for item in excluded], columns=["case", "source_file", "reason"])


def run_slice_stage(
    loader: str,
    root: Path,
    image_size: int,
    intensity_percentiles: tuple[float, float],
    n_train: int,
    n_test: int,
    seed: int,
    images_dir: Path,
    masks_dir: Path,
    fov_mm: tuple[float, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything the `slices` rule does; returns (metadata, excluded) for the caller to write."""
    slices, excluded = load_dataset(loader, root, intensity_percentiles, fov_mm)
    slices, too_small = resize_cases(slices, image_size)
    split = balanced_split(slices, n_train, n_test, seed)
    metadata = write_slices(slices, split, images_dir, masks_dir)
    excluded = excluded_table(excluded + too_small)
    log.info("%d usable cases (%d positive), %d excluded", len(metadata), metadata.label.sum(), len(excluded))
    return metadata, excluded
