"""PI-CAI loader (public release layout): T2W, expert lesion masks, whole-gland masks, marksheet.

Positive slice: the axial slice with the largest expert-delineated lesion area. Negative slice: the median slice.
Cases are excluded, each with its reason, when they have no expert delineation, when the marksheet contradicts
the delineation, or when the field of view is unlike the others or cuts the prostate (paper, Appendix C, Fig. 6).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from migros.data.intensity import robust_normalise
from migros.data.records import CaseSlice, DatasetError, ExcludedCase

EXPERT_MASKS = Path("picai_labels/csPCa_lesion_delineations/human_expert/resampled")
GLAND_MASKS = Path("picai_labels/anatomical_delineations/whole_gland/AI/Bosma22b")
MARKSHEET = Path("picai_labels/clinical_information/marksheet.csv")
GEOMETRY_TOLERANCE_MM = 1e-3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseFiles:
    case: str  # "<patient_id>_<study_id>"
    t2w: Path
    expert_mask: Path
    gland_mask: Path
    marksheet_positive: bool | None  # case_csPCa from the marksheet, None when the column is absent


def read_marksheet(root: Path) -> pd.DataFrame:
    path = root / MARKSHEET
    if not path.is_file():
        raise DatasetError(f"{path}: PI-CAI marksheet is missing (it ships with the picai_labels repository)")
    try:
        sheet = pd.read_csv(path)
    except Exception as error:
        raise DatasetError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    missing = {"patient_id", "study_id"} - set(sheet.columns)
    if missing:
        raise DatasetError(f"{path}: missing columns {sorted(missing)}")
    return sheet


def find_cases(root: Path) -> list[CaseFiles]:
    """All T2W scans of the image folds, sorted, joined with their label files and marksheet row."""
    if not root.is_dir():
        raise DatasetError(f"{root}: PI-CAI dataset folder does not exist")
    t2w_files = sorted(root.glob("picai_public_images_fold*/*/*_t2w.mha"))
    if not t2w_files:
        raise DatasetError(f"{root}: no picai_public_images_fold*/<patient_id>/<patient_id>_<study_id>_t2w.mha found")
    sheet = read_marksheet(root)
    csPCa = {}
    if "case_csPCa" in sheet.columns:
        csPCa = {
            f"{row.patient_id}_{row.study_id}": str(row.case_csPCa).strip().upper() == "YES"
            for row in sheet.itertuples()
        }
    cases = []
    for t2w in t2w_files:
        case = t2w.name.removesuffix("_t2w.mha")
        cases.append(
            CaseFiles(
                case=case,
                t2w=t2w,
                expert_mask=root / EXPERT_MASKS / f"{case}.nii.gz",
                gland_mask=root / GLAND_MASKS / f"{case}.nii.gz",
                marksheet_positive=csPCa.get(case),
            )
        )
    return cases


def read_image(path: Path) -> sitk.Image:
    """Read with SimpleITK and reorient to LPS, so that array [z, y, x] displays radiologically per z."""
    if not path.is_file():
        raise DatasetError(f"{path}: file is missing")
    try:
        return sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    except Exception as error:  # SimpleITK raises RuntimeError for truncated or corrupt files
        raise DatasetError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error


def check_same_grid(reference: sitk.Image, reference_path: Path, other: sitk.Image, other_path: Path) -> None:
    if other.GetSize() != reference.GetSize():
        raise DatasetError(f"{other_path}: size {other.GetSize()} does not match {reference_path} size {reference.GetSize()}")
    for name in ("GetSpacing", "GetOrigin"):
        if not np.allclose(getattr(other, name)(), getattr(reference, name)(), atol=GEOMETRY_TOLERANCE_MM):
            raise DatasetError(f"{other_path}: {name[3:].lower()} does not match that of {reference_path}")


def field_of_view_problem(t2w: sitk.Image, gland: np.ndarray | None, slice_index: int, fov_mm: tuple[float, float]) -> str | None:
    """The paper's exclusion rule, made explicit: a field of view unlike the others, or one that cuts the prostate."""
    width, height = (size * spacing for size, spacing in zip(t2w.GetSize()[:2], t2w.GetSpacing()[:2]))
    if not (fov_mm[0] <= width <= fov_mm[1] and fov_mm[0] <= height <= fov_mm[1]):
        return f"field of view {width:.0f}x{height:.0f} mm outside the accepted range {fov_mm[0]:g}-{fov_mm[1]:g} mm"
    if gland is None:
        return None
    if not gland.any():
        return "whole-gland mask is empty"
    border = np.zeros(gland.shape[1:], dtype=bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    if (gland & border).any():
        return "prostate extends beyond the field of view (whole-gland mask touches the image border)"
    if not gland[slice_index].any():
        return f"selected slice {slice_index} does not contain the prostate"
    return None


def load_case(files: CaseFiles, intensity_percentiles: tuple[float, float], fov_mm: tuple[float, float]) -> CaseSlice | ExcludedCase:
    if not files.expert_mask.is_file():
        reason = "no expert lesion delineation (human_expert/resampled)"
        if files.marksheet_positive:
            reason = "csPCa case without expert lesion delineation (only AI-derived masks exist)"
        return ExcludedCase(files.case, str(files.t2w), reason)
    t2w = read_image(files.t2w)
    lesions_image = read_image(files.expert_mask)
    check_same_grid(t2w, files.t2w, lesions_image, files.expert_mask)
    volume = sitk.GetArrayFromImage(t2w).astype(np.float32)  # [z, y, x]
    lesions = sitk.GetArrayFromImage(lesions_image) > 0
    gland = None
    if files.gland_mask.is_file():
        gland_image = read_image(files.gland_mask)
        check_same_grid(t2w, files.t2w, gland_image, files.gland_mask)
        gland = sitk.GetArrayFromImage(gland_image) > 0
    else:
        log.warning("%s: no whole-gland mask, so only the field-of-view size is checked", files.gland_mask)

    label = int(lesions.any())
    if files.marksheet_positive is not None and files.marksheet_positive != bool(label):
        stated = "csPCa" if files.marksheet_positive else "no csPCa"
        return ExcludedCase(files.case, str(files.t2w), f"marksheet says {stated} but the expert mask disagrees")
    lesion_area = lesions.sum(axis=(1, 2))
    slice_index = int(np.argmax(lesion_area)) if label else volume.shape[0] // 2
    problem = field_of_view_problem(t2w, gland, slice_index, fov_mm)
    if problem:
        return ExcludedCase(files.case, str(files.t2w), problem)
    try:
        normalised = robust_normalise(volume, *intensity_percentiles)
    except ValueError as error:
        raise DatasetError(f"{files.t2w}: {error}") from error
    return CaseSlice(
        case=files.case,
        label=label,
        slice_index=slice_index,
        image=normalised[slice_index],
        mask=lesions[slice_index],
        source_file=str(files.t2w),
    )
