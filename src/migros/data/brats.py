"""BraTS 2021 loader: FLAIR, middle axial slice, label = tumour present in that slice of the segmentation."""

from pathlib import Path

import nibabel as nib
import numpy as np

from migros.data.intensity import robust_normalise
from migros.data.records import CaseSlice, DatasetError


def find_cases(root: Path) -> list[Path]:
    """Case folders `BraTS2021_<id>` under root, sorted; an empty or missing root is an error."""
    if not root.is_dir():
        raise DatasetError(f"{root}: BraTS dataset folder does not exist")
    cases = sorted(path for path in root.iterdir() if path.is_dir() and path.name.startswith("BraTS2021_"))
    if not cases:
        raise DatasetError(f"{root}: no BraTS2021_<id> case folders found")
    return cases


def read_canonical(path: Path) -> np.ndarray:
    """Read a NIfTI volume reoriented to RAS, so that axis 2 runs inferior → superior whatever the header."""
    if not path.is_file():
        raise DatasetError(f"{path}: file is missing")
    try:
        image = nib.as_closest_canonical(nib.load(path))
        return np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for truncated or corrupt files
        raise DatasetError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error


def radiological(axial_ras: np.ndarray) -> np.ndarray:
    """RAS axial slice [x, y] → display [row, col] with anterior up and patient right on image left."""
    return axial_ras.T[::-1, ::-1]


def load_case(case_dir: Path, intensity_percentiles: tuple[float, float]) -> CaseSlice:
    case = case_dir.name
    flair_path = case_dir / f"{case}_flair.nii.gz"
    seg_path = case_dir / f"{case}_seg.nii.gz"
    flair = read_canonical(flair_path)
    seg = read_canonical(seg_path)
    if flair.ndim != 3:
        raise DatasetError(f"{flair_path}: expected a 3D volume, found shape {flair.shape}")
    if seg.shape != flair.shape:
        raise DatasetError(f"{seg_path}: shape {seg.shape} does not match the FLAIR shape {flair.shape}")
    try:
        normalised = robust_normalise(flair, *intensity_percentiles)
    except ValueError as error:
        raise DatasetError(f"{flair_path}: {error}") from error
    middle = flair.shape[2] // 2
    mask = radiological(seg[:, :, middle]) > 0
    return CaseSlice(
        case=case,
        label=int(mask.any()),
        slice_index=middle,
        image=np.ascontiguousarray(radiological(normalised[:, :, middle])),
        mask=np.ascontiguousarray(mask),
        source_file=str(flair_path),
    )
