"""PI-CAI loader (public release layout): T2W, expert lesion masks, whole-gland masks, marksheet.

Positive slice: the axial slice with the largest expert-delineated lesion area. Negative slice: the median slice.
Cases are excluded, each with its reason, when they have no expert delineation, when the marksheet contradicts
the delineation, or when the field of view is unlike the others or cuts the prostate (paper, Appendix C, Fig. 6).
Checks that need an optional input (whole-gland masks, the marksheet's case_csPCa, field_of_view_mm) are listed
in the case's `skipped_checks` when it is absent, so that the stage can report them.
"""

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from migros.data.intensity import apply_window, intensity_window, require_finite
from migros.data.records import CaseSlice, DatasetError, ExcludedCase

# The release's layout (Zenodo image folds + the picai_labels repository); the phantoms write the same
EXPERT_MASKS = Path("picai_labels/csPCa_lesion_delineations/human_expert/resampled")
GLAND_MASKS = Path("picai_labels/anatomical_delineations/whole_gland/AI/Bosma22b")
MARKSHEET = Path("picai_labels/clinical_information/marksheet.csv")
GEOMETRY_TOLERANCE_MM = 1e-3

# Checks that need an optional input; when it is absent the case is kept and the skip is reported (log and summary).
NO_GLAND_MASK = "no whole-gland mask: only the field-of-view size is checked, not whether the prostate is cut or in the slice"
NO_CSPCA_COLUMN = "marksheet has no case_csPCa column: marksheet-vs-mask check skipped"
NOT_IN_MARKSHEET = "case not in the marksheet: marksheet-vs-mask check skipped"
NO_FOV_RANGE = "field_of_view_mm not set: field-of-view size not checked"


@dataclass(frozen=True)
class CaseFiles:
    case: str  # "<patient_id>_<study_id>"
    patient: str
    t2w: Path
    expert_mask: Path
    gland_mask: Path
    marksheet_positive: bool | None  # case_csPCa from the marksheet; None when it cannot be known (see skipped_checks)
    skipped_checks: tuple[str, ...] = ()


def read_marksheet(root: Path) -> pd.DataFrame:
    path = root / MARKSHEET
    if not path.is_file():
        raise DatasetError(f"{path}: PI-CAI marksheet is missing (it ships with the picai_labels repository)")
    try:
        sheet = pd.read_csv(path, dtype={"patient_id": str, "study_id": str})
    except Exception as error:
        raise DatasetError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    missing = {"patient_id", "study_id"} - set(sheet.columns)
    if missing:
        raise DatasetError(f"{path}: missing columns {sorted(missing)}")
    duplicated = sheet[sheet.duplicated(["patient_id", "study_id"], keep=False)]
    if len(duplicated):
        cases = sorted(set(duplicated.patient_id + "_" + duplicated.study_id))
        raise DatasetError(f"{path}: cases listed more than once: {cases[:10]}; each study must have one row")
    if "case_csPCa" in sheet.columns:
        values = sheet.case_csPCa.astype(str).str.strip().str.upper()
        unknown = sheet[~values.isin(["YES", "NO"])]
        if len(unknown):
            rows = (unknown.patient_id + "_" + unknown.study_id + ": " + unknown.case_csPCa.astype(str)).tolist()
            raise DatasetError(f"{path}: case_csPCa must be YES or NO, found {rows[:10]}")
        sheet = sheet.assign(case_csPCa=values == "YES")
    return sheet


def split_case_name(path: Path) -> tuple[str, str, str]:
    """`<patient_id>_<study_id>_<modality>.mha` → (case, patient, modality); the folder must be the patient's."""
    parts = path.name.removesuffix(".mha").split("_")
    if len(parts) != 3:
        raise DatasetError(f"{path}: name is not <patient_id>_<study_id>_<modality>.mha as in the PI-CAI release")
    patient, study, modality = parts
    if path.parent.name != patient:
        raise DatasetError(f"{path}: lies in folder {path.parent.name!r} but its name says patient {patient!r}")
    return f"{patient}_{study}", patient, modality


def find_cases(root: Path) -> list[CaseFiles]:
    """All studies of the image folds, sorted by T2W path, joined with their label files and marksheet row.

    A study with other sequences but no T2W, or a study present in two folds, stops the run: both mean a broken
    download or a wrong copy, and guessing would drop or double a case silently.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: PI-CAI dataset folder does not exist")
    scans = defaultdict(list)
    for path in sorted(root.glob("picai_public_images_fold*/*/*.mha")):
        case, patient, modality = split_case_name(path)
        scans[case, patient].append((modality, path))
    if not scans:
        raise DatasetError(f"{root}: no picai_public_images_fold*/<patient_id>/<patient_id>_<study_id>_t2w.mha found")
    sheet = read_marksheet(root)
    marksheet = {}
    if "case_csPCa" in sheet.columns:
        marksheet = dict(zip(sheet.patient_id + "_" + sheet.study_id, sheet.case_csPCa))
    cases = []
    for (case, patient), files in scans.items():
        t2w = [path for modality, path in files if modality == "t2w"]
        if not t2w:
            folder = files[0][1].parent
            raise DatasetError(
                f"{folder / f'{case}_t2w.mha'}: T2W scan is missing, though the study has {[path.name for _, path in files]}"
            )
        if len(t2w) > 1:
            raise DatasetError(f"{case}: the same study is in more than one fold: {[str(path) for path in t2w]}")
        skipped = ()
        if "case_csPCa" not in sheet.columns:
            skipped = (NO_CSPCA_COLUMN,)
        elif case not in marksheet:
            skipped = (NOT_IN_MARKSHEET,)
        cases.append(
            CaseFiles(
                case=case,
                patient=patient,
                t2w=t2w[0],
                expert_mask=root / EXPERT_MASKS / f"{case}.nii.gz",
                gland_mask=root / GLAND_MASKS / f"{case}.nii.gz",
                marksheet_positive=marksheet.get(case),
                skipped_checks=skipped,
            )
        )
    return sorted(cases, key=lambda files: files.t2w)  # fold by fold, as the release is laid out


def read_image(path: Path) -> sitk.Image:
    """A 3D single-channel image as stored. ITK reports a truncated file as "No such file or directory"; the message says instead what is known.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: file is missing")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    size = path.stat().st_size
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise DatasetError(
            f"{path}: cannot be read: the file exists ({size} bytes) but its header is unreadable{itk_cause(error)}"
        ) from error
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1:
        raise DatasetError(
            f"{path}: expected a 3D single-channel volume, found size {reader.GetSize()} with "
            f"{reader.GetNumberOfComponents()} component(s) per voxel"
        )
    try:
        return reader.Execute()
    except RuntimeError as error:
        pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
        raise DatasetError(
            f"{path}: cannot be read: the header is readable (size {reader.GetSize()}, {pixel_type}) but the image "
            f"data is truncated or corrupt (the file has {size} bytes){itk_cause(error)}"
        ) from error


def itk_cause(error: RuntimeError) -> str:
    """ITK's cause (the last line of its multi-line text), left out where it misleads: for a truncated file ITK
    reports "No such file or directory"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines or "No such file or directory" in lines[-1]:
        return ""
    return f" ({lines[-1]})"


def lps(image: sitk.Image) -> sitk.Image:
    """Reoriented to LPS, so that array [z, y, x] displays radiologically per z."""
    return sitk.DICOMOrient(image, "LPS")


def finite_array(image: sitk.Image, path: Path) -> np.ndarray:
    array = sitk.GetArrayFromImage(image)  # [z, y, x], a copy
    if path.name.endswith((".nii", ".nii.gz")) and np.issubdtype(array.dtype, np.floating):
        # ITK's NIfTI reader turns NaN and ±Inf into 0 without a word, so count them in the file with nibabel
        require_finite(np.asarray(nib.load(path).dataobj), path)
    require_finite(array, path)
    return array


def check_same_grid(reference: sitk.Image, reference_path: Path, other: sitk.Image, other_path: Path) -> None:
    """Stored grids are compared (not reoriented ones), so a mask with a mirrored direction stops the run."""
    if other.GetSize() != reference.GetSize():
        raise DatasetError(f"{other_path}: size {other.GetSize()} does not match {reference_path} size {reference.GetSize()}")
    for name in ("GetSpacing", "GetDirection", "GetOrigin"):
        if not np.allclose(getattr(other, name)(), getattr(reference, name)(), atol=GEOMETRY_TOLERANCE_MM):
            raise DatasetError(f"{other_path}: {name[3:].lower()} does not match that of {reference_path}")


def field_of_view_problem(
    t2w: sitk.Image, gland: np.ndarray | None, slice_index: int, fov_mm: tuple[float, float] | None
) -> str | None:
    """The paper's exclusion rule, made explicit: a field of view unlike the others, or one that cuts the prostate.

    Without `fov_mm` the size is not checked; without a whole-gland mask only the size is."""
    if fov_mm is not None:
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


def load_case(
    files: CaseFiles, intensity_percentiles: tuple[float, float], fov_mm: tuple[float, float] | None
) -> CaseSlice | ExcludedCase:
    """The case's slice, or why it is excluded. Only copies of the selected slice outlive the call."""
    if not files.expert_mask.is_file():
        reason = "no expert lesion delineation (human_expert/resampled)"
        if files.marksheet_positive:
            reason = "csPCa case without expert lesion delineation (only AI-derived masks exist)"
        return ExcludedCase(files.case, str(files.t2w), reason)
    t2w = read_image(files.t2w)
    lesions_image = read_image(files.expert_mask)
    check_same_grid(t2w, files.t2w, lesions_image, files.expert_mask)
    gland_image = read_image(files.gland_mask) if files.gland_mask.is_file() else None
    if gland_image is not None:
        check_same_grid(t2w, files.t2w, gland_image, files.gland_mask)
    t2w = lps(t2w)
    volume = finite_array(t2w, files.t2w).astype(np.float32, copy=False)
    lesions = finite_array(lps(lesions_image), files.expert_mask) > 0
    gland = None if gland_image is None else finite_array(lps(gland_image), files.gland_mask) > 0
    skipped = list(files.skipped_checks)
    if gland is None:
        skipped.append(NO_GLAND_MASK)
    if fov_mm is None:
        skipped.append(NO_FOV_RANGE)

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
        window = intensity_window(volume, *intensity_percentiles)
    except ValueError as error:
        raise DatasetError(f"{files.t2w}: {error}") from error
    return CaseSlice(
        case=files.case,
        patient=files.patient,
        label=label,
        slice_index=slice_index,
        image=apply_window(volume[slice_index], window),
        mask=lesions[slice_index].copy(),
        source_file=str(files.t2w),
        skipped_checks=tuple(skipped),
    )

