"""Procedural axial T2-weighted prostate MRI phantoms in the layout of the public PI-CAI release.

The real PI-CAI loader runs on these files unchanged, so the pipeline can be exercised end to end without the
real data. Only what the loader reads is written: T2W scans in `picai_public_images_fold{0..4}` (the Zenodo
archive) and, as in the `picai_labels` repository, expert lesion delineations (only for about half of the csPCa
cases, as in the real release), whole-gland masks and the marksheet's identifiers, ISUP grade and csPCa label. The
release's ADC / HBV scans, AI lesion masks and clinical columns are not read by any stage, so they are not made.

Every case is painted as a tissue-label volume in physical millimetres (LPS: x to the patient's left, y
posterior, z superior, prostate centre at the origin), then turned into T2W signal with per-case contrast,
texture, blurring, bias field and Rician noise. Anatomy, contrast and bias vary a lot from case to case
and lesions sit near the middle of the gland, so that global intensity statistics of the selected slice (largest
lesion for positives, median slice for negatives) do not tell positives from negatives: a classifier has to look
at the lesion itself. About 12 % of the cases have a field-of-view problem (much larger field of view, or one
that cuts the prostate) for the loader's exclusion rule to catch.
"""

from __future__ import annotations

import enum
import math
import pathlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from migros.data.picai import EXPERT_MASKS, GLAND_MASKS, MARKSHEET  # the release's layout
from migros.phantoms.noise import rician_magnitude

IMAGE_FOLDS = 5
FIRST_PATIENT_ID = 10000
FIRST_STUDY_ID = 1000000
TRUTH_FILE = "phantom_truth.csv"
FOV_PROBLEMS = ("none", "large_fov", "off_centre")
MARKSHEET_COLUMNS = ("patient_id", "study_id", "case_ISUP", "case_csPCa")  # the release's, less the clinical ones

POSITIVE_FRACTION = 0.45
EXPERT_MASK_FRACTION = 0.5  # of the csPCa cases; in PI-CAI the others only have AI-derived lesion masks
FOV_PROBLEM_PROBABILITIES = (0.88, 0.06, 0.06)  # none, large_fov, off_centre
SECOND_STUDY_PROBABILITY = 0.06  # a case is the previous patient's repeat MRI
LARGE_FOV_FACTOR = 1.8
# Off-centre cases put the gland centre this fraction of its radius inside the image border, so that the gland
# is cut in every slice near its middle (where the loader picks its slice).
OFF_CENTRE_INSET = 0.35
LESION_Z_FRACTION = 0.4  # lesion centres within this fraction of the gland half-length of its middle
PZ_LESION_FRACTION = 0.7
ISUP_PROBABILITIES = {2: 0.45, 3: 0.27, 4: 0.13, 5: 0.15}
GEOMETRY_STEP_MM = 1 / 128  # origins and spacings on this step are exact in MetaImage and NIfTI (float32) headers
PSF_SIGMA_VOXELS = 0.7
MIN_LESION_SLICE_VOXELS = 2
MAX_PLACEMENT_TRIES = 200


class Tissue(enum.IntEnum):
    """Labels of the internal tissue map from which the T2W image is rendered."""

    AIR = 0
    SUBCUTANEOUS_FAT = enum.auto()
    MUSCLE = enum.auto()
    PELVIC_FAT = enum.auto()
    CORTICAL_BONE = enum.auto()
    MARROW = enum.auto()
    CARTILAGE = enum.auto()
    URINE = enum.auto()
    BLADDER_WALL = enum.auto()
    RECTAL_WALL = enum.auto()
    RECTAL_MUCOSA = enum.auto()
    RECTAL_GAS = enum.auto()
    RECTAL_CONTENT = enum.auto()
    SEMINAL_FLUID = enum.auto()
    FLOW_VOID = enum.auto()
    VEIN = enum.auto()
    PERIPHERAL_ZONE = enum.auto()
    TRANSITION_ZONE = enum.auto()
    FIBROMUSCULAR_STROMA = enum.auto()
    CAPSULE = enum.auto()
    URETHRA = enum.auto()
    GLANDULAR_NODULE = enum.auto()
    STROMAL_NODULE = enum.auto()
    BENIGN_PZ_CHANGE = enum.auto()
    LESION_PZ = enum.auto()
    LESION_TZ = enum.auto()


# T2W signal and T2W texture amplitude (relative) of each tissue.
_SIGNALS = {
    Tissue.AIR: (0, 0.0),
    Tissue.SUBCUTANEOUS_FAT: (820, 0.05),
    Tissue.MUSCLE: (230, 0.08),
    Tissue.PELVIC_FAT: (780, 0.06),
    Tissue.CORTICAL_BONE: (45, 0.1),
    Tissue.MARROW: (600, 0.15),
    Tissue.CARTILAGE: (380, 0.05),
    Tissue.URINE: (1350, 0.015),
    Tissue.BLADDER_WALL: (280, 0.05),
    Tissue.RECTAL_WALL: (250, 0.06),
    Tissue.RECTAL_MUCOSA: (480, 0.1),
    Tissue.RECTAL_GAS: (30, 0.2),
    Tissue.RECTAL_CONTENT: (650, 0.25),
    Tissue.SEMINAL_FLUID: (1050, 0.1),
    Tissue.FLOW_VOID: (120, 0.1),
    Tissue.VEIN: (950, 0.1),
    Tissue.PERIPHERAL_ZONE: (640, 0.08),
    Tissue.TRANSITION_ZONE: (380, 0.12),
    Tissue.FIBROMUSCULAR_STROMA: (200, 0.06),
    Tissue.CAPSULE: (260, 0.05),
    Tissue.URETHRA: (300, 0.05),
    Tissue.GLANDULAR_NODULE: (580, 0.12),
    Tissue.STROMAL_NODULE: (310, 0.08),
    Tissue.BENIGN_PZ_CHANGE: (520, 0.08),
    Tissue.LESION_PZ: (330, 0.05),
    Tissue.LESION_TZ: (270, 0.05),
}
_T2, _T2_TEXTURE = (np.array([_SIGNALS[t][i] for t in Tissue], np.float32) for i in range(2))
# T2W factor along a random network of thin lines: fibrous septa in fat, fatty streaks in muscle, trabeculae
_SEPTA = np.ones(len(Tissue), np.float32)
_SEPTA[[Tissue.SUBCUTANEOUS_FAT, Tissue.PELVIC_FAT, Tissue.MUSCLE, Tissue.MARROW]] = (0.7, 0.7, 1.4, 0.8)
SEPTA_WIDTH = 0.08  # threshold on unit-variance smooth noise whose zero crossings draw the network


@dataclass(frozen=True)
class Study:
    """Identifiers of one case (one MRI study); repeat studies of a patient share the patient and the fold."""

    index: int
    patient_index: int
    repeat: int  # 0 for a patient's first study, 1 for the second

    @property
    def patient_id(self) -> int:
        return FIRST_PATIENT_ID + self.patient_index

    @property
    def study_id(self) -> int:
        return FIRST_STUDY_ID + self.index

    @property
    def fold(self) -> int:
        return self.patient_index % IMAGE_FOLDS

    @property
    def case(self) -> str:
        return f"{self.patient_id}_{self.study_id}"


@dataclass(frozen=True)
class Patient:
    """What two studies of one patient share: body habitus and prostate size."""

    gland_radii: tuple[float, float, float]  # mm: lateral, antero-posterior, cranio-caudal half-axes
    hyperplasia: float  # relative size of the transition zone (benign prostatic hyperplasia)
    anterior_depth: float  # mm from the prostate centre to the anterior skin
    posterior_depth: float  # mm from the prostate centre to the posterior skin
    half_width: float  # mm, lateral half-width of the body
    fat_thickness: float  # mm of subcutaneous fat
    pelvis_scale: float


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates (mm, LPS) of one case's T2W image; arrays follow SimpleITK's [z, y, x] order."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]  # (x, y, z)

    def axis(self, dimension: int) -> np.ndarray:
        return (self.origin[dimension] + self.spacing[dimension] * np.arange(self.shape[dimension])).astype(np.float32)

    @property
    def array_shape(self) -> tuple[int, int, int]:
        return self.shape[2], self.shape[1], self.shape[0]


@dataclass(frozen=True)
class Block:
    """A shape's bounding box on the grid: its normalised radius (< 1 inside) and the box's coordinates."""

    box: tuple[slice, slice, slice]
    rho: np.ndarray  # broadcastable to the box
    x: np.ndarray  # (1, 1, nx) mm
    y: np.ndarray  # (1, ny, 1) mm
    z: np.ndarray  # (nz, 1, 1) mm


@dataclass(frozen=True)
class Case:
    """Everything written for one study."""

    study: Study
    grid: Grid
    t2w: np.ndarray
    gland: np.ndarray
    lesions: np.ndarray  # ISUP grade per voxel, 0 outside lesions
    isups: tuple[int, ...]
    fov_problem: str
    has_expert_mask: bool


def write_picai_phantoms(
    root: pathlib.Path,
    n_cases: int,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    seed: int,
    show_progress: bool = True,
) -> None:
    """Write `n_cases` PI-CAI-like cases under `root`, plus `phantom_truth.csv` for tests.

    `shape` is (x, y, z) = (columns, rows, axial slices) and `spacing` its voxel size in mm. Case k depends only
    on `seed`, `k`, `shape` and `spacing`, never on `n_cases`.
    """
    shape, spacing = _validated_geometry(shape, spacing)
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise ValueError(f"n_cases must be a positive integer, got {n_cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    root = pathlib.Path(root)
    studies = plan_studies(int(seed), int(n_cases))
    marksheet, truth = [], []
    for study in tqdm(studies, desc="prostate phantoms", unit="case", disable=not show_progress):
        case = simulate_case(int(seed), study, shape, spacing)
        _write_case(root, case)
        marksheet.append(_marksheet_row(study, case.isups))
        truth.append(
            {
                "case": study.case,
                "fov_problem": case.fov_problem,
                "n_lesions": len(case.isups),
                "has_expert_mask": case.has_expert_mask,
            }
        )
    (root / MARKSHEET).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(marksheet, columns=list(MARKSHEET_COLUMNS)).to_csv(root / MARKSHEET, index=False)
    pd.DataFrame(truth).to_csv(root / TRUTH_FILE, index=False)


def _validated_geometry(shape, spacing) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Reject grids that cannot hold a prostate with room around it (the anatomy is fixed in millimetres)."""
    try:
        shape = tuple(shape)
        spacing = tuple(spacing)
    except TypeError:
        raise ValueError(f"shape and spacing must be sequences of three numbers, got {shape!r}, {spacing!r}") from None
    if len(shape) != 3 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape):
        raise ValueError(f"shape must be three integers (x, y, z), got {shape!r}")
    if min(shape[:2]) < 32 or shape[2] < 4:
        raise ValueError(f"shape needs at least 32 x 32 voxels in plane and 4 slices, got {shape!r}")
    numbers = all(isinstance(s, (int, float, np.number)) and not isinstance(s, bool) for s in spacing)
    if len(spacing) != 3 or not numbers:
        raise ValueError(f"spacing must be three numbers in mm (x, y, z), got {spacing!r}")
    if not all(math.isfinite(s) and 0 < s <= 10 for s in spacing):
        raise ValueError(f"spacing must be finite, positive and at most 10 mm, got {spacing!r}")
    fov = [n * s for n, s in zip(shape[:2], spacing[:2])]
    if not all(100 <= f <= 400 for f in fov):
        raise ValueError(f"in-plane field of view must be 100-400 mm to frame a prostate, got {fov[0]:g}x{fov[1]:g} mm")
    return tuple(int(n) for n in shape), tuple(float(s) for s in spacing)


def plan_studies(seed: int, n_cases: int) -> list[Study]:
    """Patient and study numbering; whether case k repeats its predecessor's patient depends only on (seed, k)."""
    studies: list[Study] = []
    for index in range(n_cases):
        previous = studies[-1] if studies else None
        repeat = (
            previous is not None
            and previous.repeat == 0
            and np.random.default_rng([seed, index, 2]).random() < SECOND_STUDY_PROBABILITY
        )
        if repeat:
            studies.append(Study(index, previous.patient_index, 1))
        else:
            studies.append(Study(index, previous.patient_index + 1 if previous else 0, 0))
    return studies


def draw_patient(seed: int, patient_index: int) -> Patient:
    """Patient-level traits, from their own random stream so that repeat studies share them."""
    rng = np.random.default_rng([seed, patient_index, 1])
    size = rng.uniform(0.85, 1.3)
    radii = (26 * size * rng.uniform(0.92, 1.08), 19 * size * rng.uniform(0.9, 1.1), 16 * size * rng.uniform(0.9, 1.1))
    return Patient(
        gland_radii=tuple(float(r) for r in radii),
        hyperplasia=float(np.clip(0.75 + 0.7 * (size - 0.85) + rng.uniform(-0.08, 0.08), 0.7, 1.12)),
        anterior_depth=rng.uniform(70, 100),
        posterior_depth=rng.uniform(95, 130),
        half_width=rng.uniform(150, 185),
        fat_thickness=rng.uniform(12, 35),
        pelvis_scale=rng.uniform(0.92, 1.08),
    )


def simulate_case(seed: int, study: Study, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Case:
    """One study: design (label, lesions, field-of-view problem), anatomy, lesions and its T2W image."""
    rng = np.random.default_rng([seed, study.index])
    patient = draw_patient(seed, study.patient_index)
    positive = rng.random() < POSITIVE_FRACTION
    isups = ()
    if positive:
        n_lesions = 1 if rng.random() < 0.7 else 2
        grades = rng.choice(list(ISUP_PROBABILITIES), n_lesions, p=list(ISUP_PROBABILITIES.values()))
        isups = tuple(int(g) for g in grades)
    fov_problem = str(rng.choice(FOV_PROBLEMS, p=FOV_PROBLEM_PROBABILITIES))
    has_expert_mask = bool(not positive or rng.random() < EXPERT_MASK_FRACTION)

    grid = _case_grid(rng, shape, spacing, fov_problem, patient.gland_radii)
    labels, gland = _paint_anatomy(rng, grid, patient)
    lesions = _place_lesions(rng, grid, labels, gland, isups, patient.gland_radii)
    t2w = _render_t2w(rng, grid, labels, patient)
    return Case(
        study=study,
        grid=grid,
        t2w=t2w,
        gland=gland.astype(np.uint8),
        lesions=lesions,
        isups=isups,
        fov_problem=fov_problem,
        has_expert_mask=has_expert_mask,
    )


def _on_geometry_step(value: float) -> float:
    """Round so that the value survives the NIfTI header's float32 exactly (masks then match the T2W's grid)."""
    return round(value / GEOMETRY_STEP_MM) * GEOMETRY_STEP_MM


def _case_grid(rng, shape, spacing, fov_problem: str, gland_radii) -> Grid:
    """Place the field of view around the prostate (which sits at the physical origin)."""
    sx, sy, sz = spacing
    if fov_problem == "large_fov":
        sx, sy = _on_geometry_step(sx * LARGE_FOV_FACTOR), _on_geometry_step(sy * LARGE_FOV_FACTOR)
    sizes = np.array([sx, sy, sz]) * np.array(shape)
    # where the prostate centre lies relative to the image centre
    offset = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-4, 4)])
    if fov_problem == "off_centre":
        axis = int(rng.integers(2))
        offset[axis] = rng.choice([-1, 1]) * (sizes[axis] / 2 - OFF_CENTRE_INSET * gland_radii[axis])
    origin = -offset - (np.array(shape) - 1) / 2 * np.array([sx, sy, sz])
    return Grid(tuple(_on_geometry_step(o) for o in origin), (sx, sy, sz), shape)


def _index_range(coordinates: np.ndarray, low: float, high: float) -> slice:
    """Indices of the (ascending) voxel coordinates within [low, high]: a shape's bounding box along one axis."""
    return slice(int(np.searchsorted(coordinates, low, "left")), int(np.searchsorted(coordinates, high, "right")))


def _blob(
    grid: Grid, centre, radii, *, back_ry=None, egg=0.0, angle=0.0, tilt=(0.0, 0.0), taper=0.0, power=2.0, wobble=()
) -> Block:
    """A rotated, tilted, tapered super-ellipsoid with a wavy outline, evaluated on its bounding box only.

    An infinite z radius makes a shape that does not change along z (evaluated once, broadcast over slices).
    `tilt` moves the centre by (dx, dy) per mm of z; `taper` widens the cross-section towards +z; `wobble` is a
    sequence of (harmonic, amplitude, phase) that modulates the outline with the in-plane angle. `back_ry` is
    another second in-plane radius for the half behind the centre (along the positive second rotated axis), and
    `egg` widens the first radius towards that side: both give egg-like outlines.
    """
    cx, cy, cz = centre
    rx, ry, rz = radii
    back_ry = back_ry or ry
    z_range = _index_range(grid.axis(2), cz - rz, cz + rz) if math.isfinite(rz) else slice(None)
    z = grid.axis(2)[z_range][:, None, None]
    dz = z - np.float32(cz) if math.isfinite(rz) else np.zeros((1, 1, 1), np.float32)
    stretched = max(rx * (1 + abs(egg)), ry, back_ry) * (1 + abs(taper)) * (1 + sum(a for _, a, _ in wobble))
    drift = float(np.abs(dz).max(initial=0)) * np.array(tilt)
    box = (
        z_range,
        _index_range(grid.axis(1), cy - stretched - abs(drift[1]), cy + stretched + abs(drift[1])),
        _index_range(grid.axis(0), cx - stretched - abs(drift[0]), cx + stretched + abs(drift[0])),
    )
    x = grid.axis(0)[box[2]][None, None, :]
    y = grid.axis(1)[box[1]][None, :, None]
    dx = x - np.float32(cx) - np.float32(tilt[0]) * dz
    dy = y - np.float32(cy) - np.float32(tilt[1]) * dz
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u, v = dx * cos + dy * sin, dy * cos - dx * sin
    scale = np.maximum(1 + np.float32(taper / rz) * dz, np.float32(0.2)) if math.isfinite(rz) else np.float32(1)
    ry = np.where(v > 0, np.float32(back_ry), np.float32(ry)) if back_ry != ry else np.float32(ry)
    rx = np.float32(rx) * (np.clip(1 + np.float32(egg) * v / ry, 0.2, 1 + abs(egg)) if egg else np.float32(1))
    axes = [u / (rx * scale), v / (ry * scale)] + ([dz / np.float32(rz)] if math.isfinite(rz) else [])
    if power == 2:
        rho = np.sqrt(sum(np.square(a) for a in axes))
    else:
        rho = sum(np.abs(a) ** np.float32(power) for a in axes) ** np.float32(1 / power)
    if wobble:
        direction = (u + 1j * v).astype(np.complex64)
        direction /= np.maximum(np.abs(direction), np.float32(1e-6))
        harmonic, order, modulation = direction, 1, np.float32(1)
        for k, amplitude, phase in sorted(wobble):
            while order < k:
                harmonic, order = harmonic * direction, order + 1
            modulation = modulation + amplitude * (harmonic * np.complex64(np.exp(1j * phase))).real
        rho = rho / modulation
    return Block(box, rho, x, y, z)


def _whole(grid: Grid) -> Block:
    """The whole grid as a block, for shapes that are not ellipsoids."""
    return Block(
        (slice(None),) * 3,
        np.zeros((1, 1, 1)),
        grid.axis(0)[None, None, :],
        grid.axis(1)[None, :, None],
        grid.axis(2)[:, None, None],
    )


def _paint(labels: np.ndarray, block: Block, inside: np.ndarray, tissue: Tissue, within=None) -> None:
    """Set `tissue` where `inside` holds (optionally only over voxels that currently are one of `within`)."""
    view = labels[block.box]
    inside = np.broadcast_to(inside, view.shape)
    if within is not None:
        inside = inside & np.isin(view, within)
    view[inside] = tissue


def _wobble(rng, harmonics, amplitude) -> tuple[tuple[int, float, float], ...]:
    """Random outline harmonics for `_blob`, so that no two organs are perfect ellipses."""
    return tuple((k, rng.uniform(0, amplitude), rng.uniform(0, 2 * np.pi)) for k in harmonics)


def _paint_anatomy(rng, grid: Grid, patient: Patient) -> tuple[np.ndarray, np.ndarray]:
    """Tissue labels of the whole pelvis and the whole-gland mask; later structures overwrite earlier ones."""
    labels = np.zeros(grid.array_shape, np.uint8)
    _paint_body(rng, grid, labels, patient)
    _paint_bones(rng, grid, labels, patient)
    _paint_pelvic_organs(rng, grid, labels, patient)
    gland = _paint_prostate(rng, grid, labels, patient)
    return labels, gland


def _paint_body(rng, grid: Grid, labels: np.ndarray, patient: Patient) -> None:
    """Skin outline and subcutaneous fat, muscle mass, the pelvic fat compartment and the abdominal wall.

    The fat compartment holds the organs and, behind them, the ischioanal fossae; the muscle left between it and
    the bones is obturator internus, the muscle outside the bones the hip and gluteal muscles.
    """
    b, c = patient.gland_radii[1:]
    ps = patient.pelvis_scale
    body_cy = (patient.posterior_depth - patient.anterior_depth) / 2
    body_ry = (patient.posterior_depth + patient.anterior_depth) / 2
    wobble = _wobble(rng, (2, 3, 4), 0.03)
    body = _blob(grid, (0, body_cy, 0), (patient.half_width, body_ry, math.inf), power=2.4, wobble=wobble)
    _paint(labels, body, body.rho < 1, Tissue.SUBCUTANEOUS_FAT)
    fat = patient.fat_thickness
    inner_radii = (patient.half_width - fat, body_ry - fat, math.inf)
    inner = _blob(grid, (0, body_cy, 0), inner_radii, power=2.4, wobble=wobble)
    _paint(labels, inner, inner.rho < 1, Tissue.MUSCLE)

    # intergluteal cleft: a thin wedge of fat in the posterior midline
    whole = _whole(grid)
    cleft_start = 75 * ps + rng.uniform(0, 10)
    cleft = (whole.y > cleft_start) & (np.abs(whole.x) < 1 + 0.06 * (whole.y - cleft_start))
    _paint(labels, whole, cleft, Tissue.SUBCUTANEOUS_FAT, within=Tissue.MUSCLE)
    # fat planes between the gluteal and the deep hip muscles
    for side in (-1, 1):
        plane = _blob(grid, (side * 75 * ps, 30 * ps, 0), (45 * ps, 38 * ps, math.inf), angle=side * 0.6)
        shell = (plane.rho > 0.97) & (plane.rho < 1) & (plane.y > 0)
        _paint(labels, plane, shell, Tissue.PELVIC_FAT, within=Tissue.MUSCLE)

    # pelvic fat: narrow between the obturator internus muscles in front, wide over the ischioanal fossae behind
    cavity = _blob(
        grid,
        (0, 8 * ps, 0),
        (42 * ps, 48 * ps, math.inf),
        back_ry=64 * ps,
        egg=0.25,
        power=2.3,
        wobble=_wobble(rng, (3, 4), 0.03),
    )
    _paint(labels, cavity, cavity.rho < 1, Tissue.PELVIC_FAT)
    # prevesical / pubic fat pad in front of the symphysis, abdominal wall muscles above it
    front = -patient.anterior_depth
    pad = _blob(grid, (0, front + fat, 0), (rng.uniform(35, 50), 0.4 * fat + 8, math.inf))
    _paint(labels, pad, pad.rho < 1, Tissue.PELVIC_FAT, within=Tissue.MUSCLE)
    for side in (-1, 1):
        rectus = _blob(grid, (side * 20, front + fat + 6, 0), (17, 5.5, math.inf))
        _paint(labels, rectus, (rectus.rho < 1) & (rectus.z > 0.6 * c), Tissue.MUSCLE)
        cord = _blob(grid, (side * rng.uniform(18, 28), -(b + 38) * ps, 0), (5, 4, math.inf))
        _paint(labels, cord, (cord.rho < 1) & (cord.z < 0), Tissue.FLOW_VOID, within=Tissue.PELVIC_FAT)


def _paint_bone(grid: Grid, labels: np.ndarray, centre, radii, cortex: float, **shape) -> None:
    """A bone: cortical shell `cortex` mm thick around marrow (thinner at the ends, so that thick slices through
    a bone's end show marrow, not a disc of cortex)."""
    outer = _blob(grid, centre, radii, **shape)
    _paint(labels, outer, outer.rho < 1, Tissue.CORTICAL_BONE)
    inner = _blob(grid, centre, (radii[0] - cortex, radii[1] - cortex, radii[2] - 0.2 * cortex), **shape)
    _paint(labels, inner, inner.rho < 1, Tissue.MARROW)


def _paint_bones(rng, grid: Grid, labels: np.ndarray, patient: Patient) -> None:
    """Femoral heads and necks in their acetabula, ischium, pubic symphysis and rami, coccyx."""
    b, c = patient.gland_radii[1:]
    ps = patient.pelvis_scale
    head_radius = 23 * ps
    head_z = 0.9 * c + rng.uniform(-4, 8)
    pubis_y = -(b + rng.uniform(16, 22))
    for side in (-1, 1):
        head_x = side * 90 * ps
        _paint_bone(grid, labels, (side * 120 * ps, 0, head_z - 18), (30 * ps, 15 * ps, 14 * ps), 2.5, tilt=(-side, 0))
        _paint_bone(grid, labels, (side * 134 * ps, 12 * ps, head_z - 40), (20 * ps, 24 * ps, 24 * ps), 2.5)
        ischium_centre = (side * 70 * ps, 40 * ps, head_z - 35)
        _paint_bone(grid, labels, ischium_centre, (12 * ps, 24 * ps, 30 * ps), 2, angle=-side * 0.35)
        # acetabulum: a bony cup over the medial side of the femoral head, a cartilage gap, the head itself
        for radius, tissue in ((head_radius + 11, Tissue.CORTICAL_BONE), (head_radius + 9.5, Tissue.MARROW)):
            cup = _blob(grid, (head_x, -4, head_z), (radius,) * 3)
            medial = (side * cup.x < side * head_x + 0.3 * head_radius) & (cup.z > head_z - 0.6 * head_radius)
            _paint(labels, cup, (cup.rho < 1) & medial, tissue)
        joint = _blob(grid, (head_x, -4, head_z), (head_radius + 2,) * 3)
        _paint(labels, joint, (joint.rho < 1) & (side * joint.x < side * head_x + 0.3 * head_radius), Tissue.CARTILAGE)
        _paint_bone(grid, labels, (head_x, -4, head_z), (head_radius,) * 3, 2.5)
        # pubic bodies meet at the symphysis; superior rami run laterally above it, inferior rami below
        body_centre = (side * 19 * ps, pubis_y, head_z - 32)
        _paint_bone(grid, labels, body_centre, (20 * ps, 10 * ps, 26), 1.5, angle=side * 0.5, power=3)
        superior_centre = (side * 50 * ps, pubis_y + 8, head_z - 4)
        _paint_bone(grid, labels, superior_centre, (32 * ps, 8 * ps, 8 * ps), 1.5, angle=side * 0.3)
        inferior_centre = (side * 34 * ps, pubis_y + 18, head_z - 58)
        _paint_bone(grid, labels, inferior_centre, (22 * ps, 7 * ps, 14), 1.5, angle=side * 1.0)
    _paint_bone(grid, labels, (0, 82 * ps, head_z + 12), (10 * ps, 7 * ps, 22), 1.5)


def _paint_pelvic_organs(rng, grid: Grid, labels: np.ndarray, patient: Patient) -> None:
    """Bladder, levator ani, rectum, seminal vesicles and peri-prostatic vessels."""
    a, b, c = patient.gland_radii
    filling = rng.uniform(0.6, 1.25)
    bladder_radii = (38 * filling * rng.uniform(0.9, 1.15), 30 * filling, 28 * filling)
    bladder_z = c + 0.75 * bladder_radii[2] + rng.uniform(-4, 4)
    bladder_centre = (rng.uniform(-5, 5), -0.4 * b - rng.uniform(3, 12), bladder_z)
    bladder_wobble = _wobble(rng, (2, 3), 0.05)
    wall = _blob(grid, bladder_centre, bladder_radii, wobble=bladder_wobble)
    _paint(labels, wall, wall.rho < 1, Tissue.BLADDER_WALL)
    urine = _blob(grid, bladder_centre, tuple(r - 3 for r in bladder_radii), wobble=bladder_wobble)
    _paint(labels, urine, urine.rho < 1, Tissue.URINE)

    rectum_radii = (rng.uniform(14, 22), rng.uniform(10, 16), 400)
    rectum_centre = (rng.uniform(-4, 4), 0.85 * b + rectum_radii[1] + rng.uniform(0, 3), 0)
    # levator ani: a thin sling close around prostate and rectum, below mid-gland
    sling_front, sling_back = -0.5 * b, rectum_centre[1] + rectum_radii[1] + rng.uniform(3, 7)
    sling_radii = (max(a, rectum_radii[0]) + rng.uniform(3, 6), (sling_back - sling_front) / 2, math.inf)
    sling = _blob(grid, (0, (sling_back + sling_front) / 2, 0), sling_radii)
    band = (sling.rho > 1 - 3 / sling_radii[0]) & (sling.rho < 1) & (sling.y > -0.2 * b) & (sling.z < 0.5 * c)
    _paint(labels, sling, band, Tissue.MUSCLE)

    rectum_shape = {"tilt": (rng.uniform(-0.1, 0.1), rng.uniform(0.15, 0.35)), "wobble": _wobble(rng, (2, 3), 0.06)}
    for fraction, tissue in ((1.0, Tissue.RECTAL_WALL), (0.75, Tissue.RECTAL_MUCOSA)):
        layer = _blob(grid, rectum_centre, tuple(fraction * r for r in rectum_radii), **rectum_shape)
        _paint(labels, layer, layer.rho < 1, tissue)
    lumen_tissue, lumen_size = [(Tissue.RECTAL_GAS, 0.6), (Tissue.RECTAL_CONTENT, 0.6), (Tissue.RECTAL_GAS, 0.25)][
        rng.choice(3, p=[0.3, 0.3, 0.4])
    ]
    lumen_shape = dict(rectum_shape, wobble=_wobble(rng, (3, 4, 5), 0.15))
    lumen = _blob(grid, rectum_centre, tuple(lumen_size * r for r in rectum_radii), **lumen_shape)
    _paint(labels, lumen, lumen.rho < 1, lumen_tissue)

    for side in (-1, 1):
        vesicle_centre = (side * rng.uniform(14, 20), 0.7 * b + rng.uniform(3, 8), 0.85 * c + rng.uniform(3, 8))
        vesicle_radii = (rng.uniform(11, 16), rng.uniform(4, 6), rng.uniform(7, 10))
        vesicle_angle = -side * rng.uniform(0.2, 0.5)
        vesicle = _blob(grid, vesicle_centre, vesicle_radii, angle=vesicle_angle, wobble=_wobble(rng, (5, 7, 9), 0.1))
        _paint(labels, vesicle, vesicle.rho < 1, Tissue.SEMINAL_FLUID)
        bundle = _blob(grid, (side * 0.72 * a, 0.72 * b, 0), (2.5, 2.5, 1.3 * c))
        _paint(labels, bundle, bundle.rho < 1, Tissue.FLOW_VOID)
    for _ in range(rng.integers(6, 14)):
        phi = rng.uniform(-np.pi, 0.3)  # anterior and lateral peri-prostatic venous plexus
        radial = rng.uniform(1.08, 1.35)
        vein = _blob(grid, (radial * a * math.cos(phi), radial * b * math.sin(phi), rng.uniform(-c, c)), (2, 2, 6))
        _paint(labels, vein, vein.rho < 1, Tissue.VEIN if rng.random() < 0.6 else Tissue.FLOW_VOID, Tissue.PELVIC_FAT)


def _paint_prostate(rng, grid: Grid, labels: np.ndarray, patient: Patient) -> np.ndarray:
    """Gland with peripheral zone, transition zone (hyperplasia nodules), anterior stroma, capsule, urethra."""
    a, b, c = patient.gland_radii
    # the posterior surface is flattened against the rectum; the base (superior) is wider than the apex
    wobble = _wobble(rng, (2, 3), 0.03)
    outline = _blob(grid, (0, 0, 0), (a, b, c), back_ry=0.85 * b, power=2.4, taper=0.12, wobble=wobble)
    inside = outline.rho < 1
    gland = np.zeros(labels.shape, bool)
    gland[outline.box] = inside
    _paint(labels, outline, inside, Tissue.PERIPHERAL_ZONE)
    _paint(labels, outline, inside & (outline.rho > 0.93), Tissue.CAPSULE)

    h = patient.hyperplasia
    tz_centre = (0, -0.22 * b, 0.2 * c)
    tz_radii = (0.55 * a * h, 0.55 * b * h, 0.72 * c * h)
    tz = _blob(grid, tz_centre, tz_radii, wobble=_wobble(rng, (2, 3), 0.06))
    _paint(labels, tz, tz.rho < 1, Tissue.TRANSITION_ZONE, within=(Tissue.PERIPHERAL_ZONE, Tissue.CAPSULE))
    stroma = inside & (outline.rho > 0.8) & (outline.y < -0.5 * b) & (np.abs(outline.x) < 0.55 * a)
    _paint(labels, outline, stroma, Tissue.FIBROMUSCULAR_STROMA)
    urethra = _blob(grid, (0, -0.2 * b, 0), (2.0, 2.0, 0.9 * c))
    _paint(labels, urethra, urethra.rho < 1, Tissue.URETHRA, within=Tissue.TRANSITION_ZONE)

    for _ in range(int(round(h * rng.uniform(3, 9)))):
        direction = rng.normal(size=3)
        direction *= 0.75 * rng.random() ** (1 / 3) / np.linalg.norm(direction)
        centre = tuple(np.array(tz_centre) + direction * np.array(tz_radii))
        radius = rng.uniform(2.5, 7)
        nodule = _blob(grid, centre, (radius, radius * rng.uniform(0.8, 1.2), radius * rng.uniform(0.8, 1.2)))
        tissue = Tissue.GLANDULAR_NODULE if rng.random() < 0.5 else Tissue.STROMAL_NODULE
        _paint(labels, nodule, nodule.rho < 1, tissue, within=Tissue.TRANSITION_ZONE)
    # benign peripheral-zone changes (prostatitis, fibrosis): mild, band-like hypointensities in some glands
    for _ in range(rng.integers(0, 4)):
        phi = rng.uniform(0.3, np.pi - 0.3)
        centre = (0.8 * a * math.cos(phi), 0.8 * 0.85 * b * math.sin(phi), rng.uniform(-0.6, 0.6) * c)
        band = _blob(grid, centre, (rng.uniform(5, 10), rng.uniform(1.5, 2.5), rng.uniform(4, 8)), angle=phi)
        _paint(labels, band, band.rho < 1, Tissue.BENIGN_PZ_CHANGE, within=Tissue.PERIPHERAL_ZONE)
    return gland


def _place_lesions(rng, grid: Grid, labels: np.ndarray, gland: np.ndarray, isups, gland_radii) -> np.ndarray:
    """Paint one hypointense lesion per ISUP grade into the labels; returns the ISUP-labelled lesion mask.

    Centres lie in the peripheral zone (70 %) or transition zone, within the middle of the gland (so the slice
    with the largest lesion is near the slice a negative case contributes) and far enough from the image border
    that the lesion is fully visible even when the field of view cuts the gland.
    """
    lesions = np.zeros(labels.shape, np.uint8)
    c = gland_radii[2]
    central_slices = np.abs(grid.axis(2)) <= LESION_Z_FRACTION * c
    smallest = max(3.5, 0.75 * max(grid.spacing[:2]))
    for isup in isups:
        for _ in range(MAX_PLACEMENT_TRIES):
            zone = Tissue.PERIPHERAL_ZONE if rng.random() < PZ_LESION_FRACTION else Tissue.TRANSITION_ZONE
            radius = math.exp(rng.uniform(math.log(smallest), math.log(max(smallest, 18.0))))
            margin = [int(math.ceil(1.6 * radius / s)) + 1 for s in grid.spacing[:2]]
            allowed = np.zeros(labels.shape, bool)
            allowed[central_slices, margin[1] : -margin[1], margin[0] : -margin[0]] = True
            candidates = np.flatnonzero(allowed & (labels == zone))
            if candidates.size == 0:
                continue
            k, j, i = np.unravel_index(rng.choice(candidates), labels.shape)
            centre = (grid.axis(0)[i], grid.axis(1)[j], grid.axis(2)[k] + rng.uniform(-0.3, 0.3) * grid.spacing[2])
            aspect = rng.uniform(0.6, 1.0)
            height = max(radius * rng.uniform(0.7, 1.1), 0.6 * grid.spacing[2])
            radii = (radius / math.sqrt(aspect), radius * math.sqrt(aspect), height)
            in_pz = zone == Tissue.PERIPHERAL_ZONE
            # peripheral-zone lesions run along the crescent, transition-zone ones lie any way
            angle = math.atan2(centre[1], centre[0]) + np.pi / 2 if in_pz else rng.uniform(0, np.pi)
            lesion = _blob(grid, centre, radii, angle=angle, wobble=_wobble(rng, (2, 3, 5), 0.1))
            inside = (lesion.rho < 1) & gland[lesion.box]
            too_small = inside.sum(axis=(1, 2)).max(initial=0) < MIN_LESION_SLICE_VOXELS
            if too_small or (lesions[lesion.box][inside] > 0).any():
                continue
            lesions[lesion.box][inside] = isup
            _paint(labels, lesion, inside, Tissue.LESION_PZ if in_pz else Tissue.LESION_TZ)
            break
        else:
            raise RuntimeError(f"could not place a lesion in {MAX_PLACEMENT_TRIES} tries on grid {grid}")
    return lesions


def _smooth_noise(rng, shape, sigma_voxels: float) -> np.ndarray:
    """In-plane smooth Gaussian noise with unit standard deviation: tissue texture."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0, sigma_voxels, sigma_voxels))
    return noise / noise.std()


def _bias_field(rng, grid: Grid, patient: Patient) -> np.ndarray:
    """Smooth receive-coil sensitivity: brighter towards the anterior and posterior body surface, random tilts."""
    body_cy = (patient.posterior_depth - patient.anterior_depth) / 2
    x = grid.axis(0)[None, None, :] / 150
    y = (grid.axis(1)[None, :, None] - body_cy) / 110
    z = grid.axis(2)[:, None, None] / 40
    field = (
        1
        + rng.uniform(0.1, 0.3) * y**2
        + rng.uniform(0.0, 0.1) * x**2
        + rng.uniform(-0.08, 0.08) * x
        + rng.uniform(-0.08, 0.08) * y
        + rng.uniform(-0.05, 0.05) * z
    )
    return field.astype(np.float32)


def _tissue_contrast(rng) -> np.ndarray:
    """Per-case T2W value of every tissue: scanner and patient variation, lesions clearly darker than their zone."""
    t2 = _T2 * rng.uniform(0.9, 1.1, _T2.size).astype(np.float32)
    t2[Tissue.LESION_PZ] = t2[Tissue.PERIPHERAL_ZONE] * rng.uniform(0.38, 0.55)
    t2[Tissue.LESION_TZ] = t2[Tissue.TRANSITION_ZONE] * rng.uniform(0.55, 0.72)
    t2[Tissue.BENIGN_PZ_CHANGE] = t2[Tissue.PERIPHERAL_ZONE] * rng.uniform(0.68, 0.85)
    return t2


def _render_t2w(rng, grid: Grid, labels: np.ndarray, patient: Patient) -> np.ndarray:
    """T2W signal: tissue values with texture, blurred by the point-spread function, bias field, Rician noise."""
    t2 = _tissue_contrast(rng)[labels] * (1 + _T2_TEXTURE[labels] * _smooth_noise(rng, labels.shape, 0.8))
    septa = np.abs(_smooth_noise(rng, labels.shape, 5.0 / grid.spacing[0])) < SEPTA_WIDTH
    t2 = np.where(septa, t2 * _SEPTA[labels], t2)
    t2 = ndimage.gaussian_filter(t2, (0, PSF_SIGMA_VOXELS, PSF_SIGMA_VOXELS))
    t2 = rician_magnitude(rng, t2 * _bias_field(rng, grid, patient), rng.uniform(8, 18)) * rng.uniform(0.85, 1.15)
    return np.clip(np.rint(t2), 0, 4095).astype(np.uint16)


def _marksheet_row(study: Study, isups: tuple[int, ...]) -> dict:
    """The marksheet columns the loader reads (identifiers, csPCa), with case_ISUP agreeing with the lesions."""
    return {
        "patient_id": study.patient_id,
        "study_id": study.study_id,
        "case_ISUP": max(isups, default=0),
        "case_csPCa": "YES" if isups else "NO",
    }


def _image(array: np.ndarray, spacing, origin) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    return image


def _write_mask(path: pathlib.Path, mask: np.ndarray, reference: sitk.Image) -> None:
    """A uint8 mask with exactly the reference image's geometry (SimpleITK writes NIfTI in LPS correctly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), useCompression=True)


def _write_case(root: pathlib.Path, case: Case) -> None:
    """Images in the Zenodo layout, label files in the picai_labels layout."""
    study, grid = case.study, case.grid
    folder = root / f"picai_public_images_fold{study.fold}" / str(study.patient_id)
    folder.mkdir(parents=True, exist_ok=True)
    t2w = _image(case.t2w, grid.spacing, grid.origin)
    sitk.WriteImage(t2w, str(folder / f"{study.case}_t2w.mha"), useCompression=True)
    if case.has_expert_mask:
        _write_mask(root / EXPERT_MASKS / f"{study.case}.nii.gz", case.lesions, t2w)
    _write_mask(root / GLAND_MASKS / f"{study.case}.nii.gz", case.gland, t2w)
