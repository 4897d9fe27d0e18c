"""BraTS 2021 loader: FLAIR, middle axial slice, label = tumour present in that slice of the segmentation."""

import logging
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np

from migros.data.intensity import apply_window, intensity_window, require_finite
from migros.data.records import CaseSlice, DatasetError

SEG_LABELS = (0, 1, 2, 4)  # background, necrosis, oedema, enhancing tumour
GEOMETRY_TOLERANCE_MM = 1e-3
CASE_PREFIX = "BraTS2021_"  # case folders BraTS2021_<id>/ holding BraTS2021_<id>_<modality>.nii.gz

log = logging.getLogger(__name__)


class Volume(NamedTuple):
    path: Path
    stored: nib.Nifti1Image  # the file as stored (header and voxel grid; its data is not loaded again)
    data: np.ndarray  # float32 voxels reoriented to RAS: axis 2 runs inferior → superior whatever the header

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.stored.affine))


def case_name(index: int) -> str:
    """The release's subject identifier, `BraTS2021_<5 digits>`, also its case folder's name."""
    return f"{CASE_PREFIX}{index:05d}"


def volume_name(case: str, modality: str, extension: str = ".nii.gz") -> str:
    """A volume's file name in its case folder: `<case>_<modality>.nii.gz` (e.g. flair, seg)."""
    return f"{case}_{modality}{extension}"


def find_cases(root: Path) -> list[Path]:
    """Case folders `BraTS2021_<id>` under root, sorted; an empty or missing root is an error."""
    if not root.is_dir():
        raise DatasetError(f"{root}: BraTS dataset folder does not exist")
    cases = sorted(path for path in root.iterdir() if path.is_dir() and path.name.startswith(CASE_PREFIX))
    if not cases:
        raise DatasetError(f"{root}: no {CASE_PREFIX}<id> case folders found")
    return cases


def volume_path(case_dir: Path, modality: str) -> Path:
    """`<case>_<modality>.nii.gz`, else `.nii` (BraTS is unpacked both ways); `.nii.gz` wins when both exist."""
    compressed = case_dir / volume_name(case_dir.name, modality)
    plain = case_dir / volume_name(case_dir.name, modality, ".nii")
    if compressed.is_file():
        if plain.is_file():
            log.warning("%s and %s both exist: reading the .nii.gz", compressed, plain.name)
        return compressed
    if plain.is_file():
        return plain
    raise DatasetError(f"{compressed}: file is missing (and there is no {plain.name} either)")


def read_volume(path: Path) -> Volume:
    """A 3D NIfTI volume with finite voxels, reoriented to RAS; what is wrong with an unreadable file is said."""
    try:
        image = nib.load(path)
    except Exception as error:  # nibabel raises many types for truncated or corrupt files
        raise DatasetError(
            f"{path}: cannot be read: the file exists ({path.stat().st_size} bytes) but its header is unreadable "
            f"({type(error).__name__}: {error})"
        ) from error
    if len(image.shape) != 3:
        raise DatasetError(f"{path}: expected a 3D volume, found shape {image.shape}")
    try:
        canonical = nib.as_closest_canonical(image)
        data = np.asarray(canonical.dataobj, dtype=np.float32)
    except Exception as error:
        raise DatasetError(
            f"{path}: cannot be read: the header is readable (shape {image.shape}) but the image data is truncated "
            f"or corrupt ({path.stat().st_size} bytes; {type(error).__name__}: {error})"
        ) from error
    require_finite(data, path)
    return Volume(path, image, data)


def whole_tumour_size(seg: Volume) -> tuple[float, float]:
    """A segmentation's whole tumour (every label above 0: what FLAIR shows bright) as its volume in cm³ and its area
    in mm² on its largest axial slice; `seg` as read_volume returns it (axes in RAS order)."""
    stored_sizes = nib.affines.voxel_sizes(seg.stored.affine)
    sizes = np.empty(3)
    for stored_axis, (ras_axis, _) in enumerate(nib.io_orientation(seg.stored.affine)):
        sizes[int(ras_axis)] = stored_sizes[stored_axis]
    tumour = seg.data > 0
    return float(tumour.sum() * sizes.prod() / 1000), float(tumour.sum(axis=(0, 1)).max() * sizes[0] * sizes[1])


def check_same_geometry(flair: Volume, seg: Volume) -> None:
    """The segmentation must be stored on the FLAIR's voxel grid, as BraTS ships it.

    The stored grids are compared, not the reoriented ones: a segmentation whose affine was mirrored (with or without
    its origin moved) would otherwise be reoriented into a mask beside the tumour while the label is kept.
    """
    if seg.stored.shape != flair.stored.shape:
        raise DatasetError(f"{seg.path}: shape {seg.stored.shape} does not match the FLAIR shape {flair.stored.shape}")
    seg_spacing, flair_spacing = seg.stored.header.get_zooms(), flair.stored.header.get_zooms()
    if not np.allclose(seg_spacing, flair_spacing, atol=GEOMETRY_TOLERANCE_MM):
        raise DatasetError(
            f"{seg.path}: voxel spacing {tuple(map(float, seg_spacing))} mm does not match the FLAIR's "
            f"{tuple(map(float, flair_spacing))} mm ({flair.path})"
        )
    if seg.orientation != flair.orientation:
        raise DatasetError(
            f"{seg.path}: orientation {seg.orientation} does not match the FLAIR's {flair.orientation} "
            f"({flair.path}): a mirrored or rotated segmentation; store it on the FLAIR's voxel grid"
        )
    if not np.allclose(seg.stored.affine, flair.stored.affine, atol=GEOMETRY_TOLERANCE_MM):
        raise DatasetError(
            f"{seg.path}: affine {seg.stored.affine.round(3).tolist()} does not match the FLAIR's "
            f"{flair.stored.affine.round(3).tolist()} ({flair.path}): the mask would be shifted or mirrored against "
            f"the image; store it on the FLAIR's voxel grid"
        )


def check_seg_labels(seg: Volume) -> None:
    outside = ~np.isin(seg.data, SEG_LABELS)
    if outside.any():
        values = ", ".join(f"{value:g}" for value in np.unique(seg.data[outside])[:10])
        raise DatasetError(
            f"{seg.path}: {int(outside.sum())} voxels have labels {values} outside BraTS's "
            f"{{0, 1, 2, 4}}; is this a segmentation of another dataset or an interpolated (resampled) mask?"
        )


def radiological(axial_ras: np.ndarray) -> np.ndarray:
    """RAS axial slice [x, y] → display [row, col] with anterior up and patient right on image left."""
    return axial_ras.T[::-1, ::-1]


def load_case(case_dir: Path, intensity_percentiles: tuple[float, float], fov_mm: None = None) -> CaseSlice:
    """The case's middle axial slice. `fov_mm` is there because every loader takes it: BraTS volumes are
    skull-stripped on one 240 × 240 × 155 mm grid, so there is no field of view to check and it must be None."""
    if fov_mm is not None:
        raise DatasetError(f"{case_dir}: field_of_view_mm is a PI-CAI check; BraTS volumes share one 240 mm grid")
    flair = read_volume(volume_path(case_dir, "flair"))
    seg = read_volume(volume_path(case_dir, "seg"))
    check_same_geometry(flair, seg)
    check_seg_labels(seg)
    try:
        window = intensity_window(flair.data, *intensity_percentiles)
    except ValueError as error:
        raise DatasetError(f"{flair.path}: {error}") from error
    middle = flair.data.shape[2] // 2
    mask = radiological(seg.data[:, :, middle]) > 0
    return CaseSlice(
        case=case_dir.name,
        patient=case_dir.name,  # one subject per BraTS case
        label=int(mask.any()),
        slice_index=middle,
        image=np.ascontiguousarray(radiological(apply_window(flair.data[:, :, middle], window))),
        mask=mask,
        source_file=str(flair.path),
    )

