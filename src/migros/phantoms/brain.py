"""Synthetic FLAIR-like brain-tumour volumes in the BraTS 2021 file layout.

The real BraTS loader runs on these files unchanged, so the pipeline can be exercised end to end without the
licensed BraTS data. Anatomy comes from the MNI152 template shipped with nilearn, resampled once into the
BraTS grid; every subject is a smooth deformation of it with its own contrast, bias field, noise, healthy
hyperintensities and exactly one tumour. Subject-level variation is deliberately large, so that global
intensity statistics of a middle slice do not tell whether the slice contains tumour: a classifier has to
look at the lesion itself.
"""

from __future__ import annotations

import csv
import functools
import pathlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nilearn import datasets
from scipy import ndimage
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from migros.data.brats import case_name, volume_name  # the release's layout
from migros.phantoms.noise import rician_magnitude

BRATS_FIELD_MM = np.array([240.0, 240.0, 155.0])
# MNI152 point (mm) put at the centre of the BraTS field: the centre of the template's brain-mask bounding box.
BRAIN_CENTRE_MNI_MM = np.array([0.0, -17.0, 5.0])
NECROSIS, OEDEMA, ENHANCING = 1, 2, 4
TRUTH_FILE = "phantom_truth.csv"
TRUTH_COLUMNS = (
    "case",
    "tumour_centre_x",
    "tumour_centre_y",
    "tumour_centre_z",
    "tumour_voxels",
    "middle_slice_has_tumour",
    "middle_slice_tumour_voxels",
)
# Tumour centres are drawn from deep cerebral white matter at or above this MNI height (no cerebellar tumours).
LOWEST_TUMOUR_CENTRE_MNI_MM = -22.0
# Pre-operative glioblastomas are large: from this smallest radius the phantoms' median whole tumour is ~60 cm³ and
# ~1,800 mm² on its largest axial slice, the sizes that divide a published cohort (docs/methods.md, "Lesion sizes").
SMALLEST_WHOLE_TUMOUR_RADIUS_MM = 20.0
# Tumour centre height above or below the middle slice, in whole-tumour radii, is uniform in +-HEIGHT_SPREAD, as
# far as deep white matter reaches: the middle slice then crosses the tumour in about 70 % of the subjects (tumours
# of several cm can rarely avoid it).
HEIGHT_SPREAD = 2.4


def write_brats_phantoms(
    root: pathlib.Path, n_subjects: int, shape: tuple[int, int, int], seed: int, show_progress: bool = True,
    workers: int = 1,
) -> None:
    """Write `n_subjects` phantoms (FLAIR + segmentation) under `root`, plus `phantom_truth.csv` for tests.

    Voxel (i, j, k) of `shape` covers BraTS's 240 x 240 x 155 mm field with i towards the patient's left,
    j towards posterior and k towards superior (LPS, as in BraTS). Subject k depends only on `seed`, `k` and
    `shape`, never on `n_subjects` or on how many `workers` (processes) write them.
    """
    shape = _validated_shape(shape)
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive integer, got {n_subjects!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    subjects = [(root, shape, int(seed), index) for index in range(int(n_subjects))]
    # one BLAS / OpenMP thread per process: a phantom gains nothing from a second (measured: same wall time, twice
    # the CPU), so processes are what use the cores
    with (ProcessPoolExecutor(max_workers=workers, initializer=threadpool_limits, initargs=(1,)) if workers > 1
          else nullcontext()) as pool:
        written = pool.map(_write_subject, subjects, chunksize=4) if pool else map(_write_subject, subjects)
        rows = list(tqdm(written, total=len(subjects), desc="brain phantoms", unit="subject",
                         disable=not show_progress))
    with open(root / TRUTH_FILE, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_subject(subject: tuple[pathlib.Path, tuple[int, int, int], int, int]) -> dict:
    """Simulate and save subject `index` (its own random stream: (seed, index)); its row of the truth table."""
    root, shape, seed, index = subject
    reference = _reference(shape)
    flair, seg, centre = _simulate_subject(np.random.default_rng([seed, index]), reference)
    case = case_name(index)
    _save_volumes(root / case, case, flair, seg, reference.affine)
    middle = seg[:, :, shape[2] // 2]
    return {
        "case": case,
        "tumour_centre_x": centre[0],
        "tumour_centre_y": centre[1],
        "tumour_centre_z": centre[2],
        "tumour_voxels": int(np.count_nonzero(seg)),
        "middle_slice_has_tumour": int(middle.any()),
        "middle_slice_tumour_voxels": int(np.count_nonzero(middle)),
    }


def brats_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel-to-world (RAS mm) affine of the BraTS-like grid: LPS axes, diag(-1, -1, 1) times the spacing.

    World coordinates are MNI152 millimetres, with the template's brain centred in the field.
    """
    shape = np.array(_validated_shape(shape))
    spacing = BRATS_FIELD_MM / shape
    axes = np.diag([-1.0, -1.0, 1.0]) * spacing
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = BRAIN_CENTRE_MNI_MM - axes @ ((shape - 1) / 2)
    return affine


def _validated_shape(shape) -> tuple[int, int, int]:
    """Reject anything but three positive integer sizes, each big enough to hold a brain."""
    try:
        sizes = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of three integers, got {shape!r}") from None
    if len(sizes) != 3 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in sizes):
        raise ValueError(f"shape must be three integers, got {shape!r}")
    if min(sizes) < 16:
        raise ValueError(f"every axis of shape needs at least 16 voxels, got {shape!r}")
    return tuple(int(n) for n in sizes)


@dataclass(frozen=True)
class _Reference:
    """MNI152 anatomy resampled into the BraTS grid, shared by all subjects (each is a deformation of it)."""

    shape: tuple[int, int, int]
    spacing: np.ndarray
    affine: np.ndarray
    grey: np.ndarray
    white: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    depth_mm: np.ndarray
    periventricular: np.ndarray
    ventricle_voxels: np.ndarray
    white_voxels: np.ndarray
    tumour_sites: np.ndarray


@functools.lru_cache(maxsize=2)
def _reference(shape: tuple[int, int, int]) -> _Reference:
    """Load and resample the template once per grid (cached: tests and configs reuse a few grids)."""
    affine = brats_affine(shape)
    spacing = BRATS_FIELD_MM / np.array(shape)
    grey, white, brain = (
        _resample_template(loader(resolution=1), affine, shape)
        for loader in (
            datasets.load_mni152_gm_template,
            datasets.load_mni152_wm_template,
            datasets.load_mni152_brain_mask,
        )
    )
    # Tissue probabilities may not exceed the brain mask (they do slightly at its edge); the rest is CSF.
    excess = np.maximum(grey + white, 1e-6) / np.maximum(brain, 1e-6)
    grey, white = (np.where(excess > 1.0, tissue / excess, tissue) for tissue in (grey, white))
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    depth_mm = ndimage.distance_transform_edt(brain > 0.5, sampling=spacing).astype(np.float32)
    height_mm = (affine[2, 2] * np.arange(shape[2]) + affine[2, 3])[None, None, :]
    ventricles = (csf > 0.5) & (depth_mm > 15.0) & (height_mm > -5.0) & (height_mm < 35.0)
    ventricle_distance = ndimage.distance_transform_edt(~ventricles, sampling=spacing)
    periventricular = (white * np.exp(-ventricle_distance / 6.0)).astype(np.float32)
    tumour_sites = (white > 0.5) & (depth_mm > 15.0) & (height_mm >= LOWEST_TUMOUR_CENTRE_MNI_MM)
    reference = _Reference(
        shape=shape,
        spacing=spacing,
        affine=affine,
        grey=grey,
        white=white,
        csf=csf.astype(np.float32),
        brain=brain,
        depth_mm=depth_mm,
        periventricular=periventricular,
        ventricle_voxels=np.argwhere(ventricles),
        white_voxels=np.argwhere((white > 0.6) & (depth_mm > 8.0)),
        tumour_sites=np.argwhere(tumour_sites),
    )
    for value in vars(reference).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return reference


def _resample_template(image: nib.Nifti1Image, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Resample a 1 mm template map into the grid, smoothing first so coarse grids do not alias."""
    data = image.get_fdata(dtype=np.float32)
    target_spacing = np.abs(np.diag(affine)[:3])
    sigma_mm = np.sqrt(np.maximum(target_spacing**2 - 1.0, 0.0)) / 2.355
    data = ndimage.gaussian_filter(data, sigma_mm / np.abs(np.diag(image.affine)[:3]))
    to_template = np.linalg.inv(image.affine) @ affine
    return ndimage.affine_transform(
        data, to_template[:3, :3], offset=to_template[:3, 3], output_shape=shape, order=1, cval=0.0
    ).astype(np.float32)


@dataclass(frozen=True)
class _Tumour:
    """Geometry and FLAIR appearance of one subject's tumour (lengths in mm, intensities relative to WM)."""

    centre: np.ndarray
    core_radii: np.ndarray
    rotation: np.ndarray
    oedema_reach: float
    necrotic: bool
    rim_mm: float
    oedema_level: float
    enhancing_level: float
    necrosis_level: float
    mass_effect: float
    mass_effect_radius: float


def _simulate_subject(rng: np.random.Generator, reference: _Reference) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One subject: deformed healthy anatomy, tumour with mass effect, then scanner effects."""
    spacing = reference.spacing
    scale = rng.uniform(0.9, 1.08) * rng.uniform(0.96, 1.04, size=3)
    rotation = _rotation(rng.normal(0.0, np.radians(3.0), size=3))
    shift_mm = rng.normal(0.0, 3.0, size=3)
    tumour = _draw_tumour(rng, reference, scale, rotation, shift_mm)
    displacement_mm = rng.uniform(1.5, 3.5) * _smooth_noise(rng, reference.shape, spacing, 40.0, channels=3)
    coordinates = _source_coordinates(reference, scale, rotation, shift_mm, displacement_mm, tumour)
    healthy = _healthy_flair(rng, reference)
    intensity = ndimage.map_coordinates(healthy, coordinates, order=1, output=np.float32)
    brain = ndimage.map_coordinates(reference.brain, coordinates, order=1, output=np.float32) > 0.5
    seg = _paint_tumour(rng, reference, tumour, coordinates, intensity, brain)
    flair = _acquire(rng, reference, intensity, brain)
    return flair, seg, tuple(int(v) for v in tumour.centre)


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three Euler angles (radians)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


def _grid_mm(shape: tuple[int, ...], spacing: np.ndarray, origin_voxel: np.ndarray) -> list[np.ndarray]:
    """Broadcastable per-axis positions (mm) of a grid's voxels relative to `origin_voxel`."""
    axes = []
    for axis, (n, step, origin) in enumerate(zip(shape, spacing, origin_voxel)):
        view = [1, 1, 1]
        view[axis] = n
        axes.append(((np.arange(n) - origin) * step).astype(np.float32).reshape(view))
    return axes


def _draw_tumour(
    rng: np.random.Generator, reference: _Reference, scale: np.ndarray, rotation: np.ndarray, shift_mm: np.ndarray
) -> _Tumour:
    """Place one tumour in deep cerebral white matter, with BraTS-like size and FLAIR appearance.

    Whole-tumour (FLAIR hyperintensity) radii are log-uniform from SMALLEST_WHOLE_TUMOUR_RADIUS_MM to 4.5 cm; the
    lower bound grows with the voxel size so that coarse grids still resolve the tumour. The height is
    drawn relative to the tumour's own extent, so whether the middle axial slice crosses it (about 70 %
    of the subjects) depends little on its size: otherwise big tumours, which push the volume's upper
    intensity percentile up and so darken normalised healthy tissue, would mostly be the positives.
    """
    smallest_mm = max(SMALLEST_WHOLE_TUMOUR_RADIUS_MM, 1.5 * reference.spacing.max())
    whole_radius = np.exp(rng.uniform(np.log(smallest_mm), np.log(45.0)))
    oedema_reach = rng.uniform(1.5, 3.2)
    core_radius = whole_radius / oedema_reach
    grid_centre = (np.array(reference.shape) - 1) / 2
    sites_mm = scale * ((reference.tumour_sites - grid_centre) * reference.spacing - shift_mm) @ rotation
    middle_mm = (reference.shape[2] // 2 - grid_centre[2]) * reference.spacing[2]
    wanted_height_mm = middle_mm + rng.uniform(-HEIGHT_SPREAD, HEIGHT_SPREAD) * whole_radius
    height_error = np.abs(sites_mm[:, 2] - wanted_height_mm)
    candidates = np.flatnonzero(height_error <= height_error.min() + reference.spacing[2])
    chosen = candidates[rng.integers(len(candidates))]
    site = reference.tumour_sites[chosen]
    centre = np.clip(np.rint(sites_mm[chosen] / reference.spacing + grid_centre), 0, np.array(reference.shape) - 1)
    depth_mm = float(reference.depth_mm[tuple(site)])
    return _Tumour(
        centre=centre.astype(int),
        core_radii=core_radius * np.clip(rng.normal(1.0, 0.15, size=3), 0.7, 1.3),
        rotation=_rotation(rng.uniform(0.0, 2 * np.pi, size=3)),
        oedema_reach=oedema_reach,
        necrotic=bool(core_radius > 8.0 and rng.random() < 0.8),
        rim_mm=rng.uniform(2.0, 5.0),
        oedema_level=rng.uniform(1.5, 2.2),
        enhancing_level=rng.uniform(1.3, 1.9),
        necrosis_level=rng.uniform(0.5, 1.3),
        mass_effect=rng.uniform(0.15, 0.5),
        mass_effect_radius=min(2.2 * core_radius + 6.0, depth_mm + 8.0),
    )


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray, correlation_mm: float, channels: int = 1
) -> np.ndarray:
    """Unit-variance random fields with Gaussian correlation length `correlation_mm` (leading axis: channel).

    Built by separable Gaussian interpolation of a coarse lattice of random knots: three small tensor
    products instead of a full-volume filter, so it stays cheap at any grid size.
    """
    weights = []
    for n, step in zip(shape, spacing):
        positions = np.arange(n) * step
        knots = np.arange(-2 * correlation_mm, n * step + 2 * correlation_mm, correlation_mm)
        weights.append(np.exp(-0.5 * ((positions[:, None] - knots[None, :]) / correlation_mm) ** 2))
    # Rows of unit norm give every voxel unit variance.
    first, second, third = ((w / np.sqrt((w**2).sum(axis=1, keepdims=True))).astype(np.float32) for w in weights)
    lattice = rng.standard_normal((channels, first.shape[1], second.shape[1], third.shape[1]), dtype=np.float32)
    field = second @ (lattice @ third.T)
    field = (first @ field.reshape(channels, first.shape[1], -1)).reshape(channels, *shape)
    return field if channels > 1 else field[0]


def _source_coordinates(
    reference: _Reference,
    scale: np.ndarray,
    rotation: np.ndarray,
    shift_mm: np.ndarray,
    displacement_mm: np.ndarray,
    tumour: _Tumour,
) -> np.ndarray:
    """For every subject voxel, the reference voxel it shows: similarity plus smooth warp, then mass effect.

    The mass effect pulls sampling points towards the tumour centre, i.e. pushes tissue away from it; its
    compact support keeps the brain outline (and so the brain area of a slice) unchanged.
    """
    spacing = reference.spacing
    grid_centre = (np.array(reference.shape) - 1) / 2
    matrix = rotation / scale[None, :]
    positions = _grid_mm(reference.shape, spacing, grid_centre)
    coordinates = np.empty((3, *reference.shape), dtype=np.float32)
    for axis in range(3):
        source_mm = sum(matrix[axis, other] * positions[other] for other in range(3)) + displacement_mm[axis]
        coordinates[axis] = (source_mm + shift_mm[axis]) / spacing[axis] + grid_centre[axis]
    half = np.ceil(tumour.mass_effect_radius / spacing).astype(int)
    low = np.maximum(tumour.centre - half, 0)
    high = np.minimum(tumour.centre + half + 1, reference.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    offsets = _grid_mm(tuple(high - low), spacing, tumour.centre - low)
    radius = np.sqrt(sum(o**2 for o in offsets)) / tumour.mass_effect_radius
    pull = tumour.mass_effect * np.clip(1.0 - radius**2, 0.0, None) ** 2
    for axis in range(3):
        coordinates[axis][box] -= pull * sum(matrix[axis, other] * offsets[other] for other in range(3)) / spacing[axis]
    return coordinates


def _healthy_flair(rng: np.random.Generator, reference: _Reference) -> np.ndarray:
    """Healthy FLAIR contrast (WM = 1) with subject-specific tissue levels and healthy hyperintensities.

    Periventricular caps, punctate white-matter lesions and CSF-flow artefacts are bright like oedema, as
    in real FLAIR, so that bright pixels alone do not reveal the tumour.
    """
    grey_level = rng.uniform(1.05, 1.35)
    csf_level = rng.uniform(0.1, 0.45)
    flair = reference.white + grey_level * reference.grey + csf_level * reference.csf
    if rng.random() < 0.6:
        severity = rng.uniform(0.0, 1.0)
        patchiness = _smooth_noise(rng, reference.shape, reference.spacing, 8.0)
        threshold = 0.75 - 0.45 * severity
        caps = np.clip((reference.periventricular - threshold) / 0.2 + 0.7 * patchiness, 0.0, 1.0)
        flair += rng.uniform(0.2, 0.7) * caps * reference.white
    for _ in range(rng.poisson(rng.uniform(0.0, 10.0))):
        site = reference.white_voxels[rng.integers(len(reference.white_voxels))]
        _add_blob(flair, site, rng.uniform(1.5, 4.0), rng.uniform(0.3, 0.9), reference.spacing)
    if rng.random() < 0.4:
        for _ in range(rng.integers(1, 5)):
            site = reference.ventricle_voxels[rng.integers(len(reference.ventricle_voxels))]
            _add_blob(flair, site, rng.uniform(2.0, 5.0), rng.uniform(0.8, 1.7), reference.spacing)
    return flair


def _add_blob(volume: np.ndarray, centre: np.ndarray, radius_mm: float, amplitude: float, spacing: np.ndarray) -> None:
    """Add a Gaussian blob in place, touching only a small box around it."""
    half = np.ceil(3 * radius_mm / spacing).astype(int)
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, volume.shape)
    offsets = _grid_mm(tuple(high - low), spacing, centre - low)
    squared = sum(o**2 for o in offsets) / radius_mm**2
    volume[tuple(slice(a, b) for a, b in zip(low, high))] += amplitude * np.exp(-0.5 * squared)


def _paint_tumour(
    rng: np.random.Generator,
    reference: _Reference,
    tumour: _Tumour,
    coordinates: np.ndarray,
    intensity: np.ndarray,
    brain: np.ndarray,
) -> np.ndarray:
    """Label and paint the tumour in place, inside a box around it; return the BraTS segmentation.

    The core is an ellipsoid with a noisy boundary (enhancing rim, necrotic centre when large); oedema
    reaches `oedema_reach` core radii in white matter but much less into grey matter and none into CSF.
    """
    spacing = reference.spacing
    reach_mm = tumour.core_radii.max() * tumour.oedema_reach / 0.7 + spacing
    low = np.maximum(tumour.centre - np.ceil(reach_mm / spacing).astype(int), 0)
    high = np.minimum(tumour.centre + np.ceil(reach_mm / spacing).astype(int) + 1, reference.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    box_shape = tuple(high - low)
    offsets = _grid_mm(box_shape, spacing, tumour.centre - low)
    inverse = tumour.rotation.T / tumour.core_radii[:, None]
    rho = np.sqrt(sum(sum(inverse[row, axis] * offsets[axis] for axis in range(3)) ** 2 for row in range(3)))
    mean_radius = float(tumour.core_radii.mean())
    core_noise = _smooth_noise(rng, box_shape, spacing, max(0.4 * mean_radius, 2.0))
    oedema_noise = _smooth_noise(rng, box_shape, spacing, 6.0)
    rho_core = rho * np.clip(1.0 + rng.uniform(0.15, 0.35) * core_noise, 0.7, 1.5)
    rho_oedema = rho * np.clip(1.0 + 0.25 * oedema_noise, 0.7, 1.5)
    box_coordinates = coordinates[(slice(None), *box)]
    white = ndimage.map_coordinates(reference.white, box_coordinates, order=1)
    grey = ndimage.map_coordinates(reference.grey, box_coordinates, order=1)
    affinity = np.clip(white + 0.3 * grey, 0.0, 1.0)
    inside = brain[box]
    core = (rho_core < 1.0) & inside
    necrosis = core & (rho_core < 1.0 - tumour.rim_mm / mean_radius) if tumour.necrotic else np.zeros_like(core)
    oedema = (rho_oedema < 1.0 + (tumour.oedema_reach - 1.0) * affinity) & inside & ~core
    labels = np.zeros(box_shape, dtype=np.uint8)
    labels[oedema] = OEDEMA
    labels[core] = ENHANCING
    labels[necrosis] = NECROSIS

    healthy = intensity[box]
    fade = np.clip((rho_oedema - 1.0) / max(tumour.oedema_reach - 1.0, 1e-3), 0.0, 1.0)
    painted = np.select(
        [labels == NECROSIS, labels == ENHANCING, labels == OEDEMA],
        [
            np.full(box_shape, tumour.necrosis_level),
            tumour.enhancing_level * (1.0 + 0.08 * core_noise),
            np.maximum(tumour.oedema_level * (1.0 - 0.15 * fade) * (1.0 + 0.06 * oedema_noise), healthy),
        ],
        healthy,
    )
    intensity[box] = healthy + ndimage.gaussian_filter(painted - healthy, 0.5)
    seg = np.zeros(reference.shape, dtype=np.uint8)
    seg[box] = labels
    return seg


def _acquire(rng: np.random.Generator, reference: _Reference, intensity: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Scanner effects: smooth multiplicative bias, arbitrary global scale, Rician noise; skull-stripped int16.

    Only brain voxels are simulated: skull stripping zeroes the rest anyway.
    """
    white_level = np.exp(rng.uniform(np.log(250.0), np.log(900.0)))
    bias = np.exp(rng.uniform(0.05, 0.25) * _smooth_noise(rng, reference.shape, reference.spacing, 70.0))
    signal = white_level * intensity[brain] * bias[brain]
    magnitude = rician_magnitude(rng, signal, white_level * rng.uniform(0.015, 0.05))
    flair = np.zeros(reference.shape, dtype=np.int16)
    flair[brain] = np.clip(np.rint(magnitude), 1, np.iinfo(np.int16).max)
    return flair


def _save_volumes(folder: pathlib.Path, case: str, flair: np.ndarray, seg: np.ndarray, affine: np.ndarray) -> None:
    """Write FLAIR and segmentation as BraTS does: one folder per case, `<case>_<modality>.nii.gz`."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, data in (("flair", flair), ("seg", seg)):
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm")
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, folder / volume_name(case, suffix))
