"""Generic offline pretraining corpus for the demo base model: healthy brain slices that are NOT the task.

No Stable Diffusion weights can be downloaded here, so the demo pipeline pretrains a small SD-architecture model
on images that ship with nilearn: the MNI152 2009 template's grey-matter, white-matter and brain masks. The
fine-tuning tasks are axial FLAIR brain slices and axial T2 prostate slices; to keep the base model generic (as
SD is for MRI), this corpus holds only sagittal and coronal slices, in T1-, T2- and PD-like contrasts computed
from the tissue maps, and no lesions. Every image depends only on the seed and its index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from nilearn import datasets
from tqdm import tqdm

ORIENTATIONS = ("sagittal", "coronal")
# Relative signal of (CSF, grey matter, white matter) per contrast: the textbook orderings of T1 (WM > GM > CSF),
# T2 (CSF > GM > WM) and proton density (CSF >= GM > WM, low contrast).
CONTRASTS = {"T1": (0.25, 0.6, 1.0), "T2": (1.0, 0.6, 0.4), "PD": (1.0, 0.85, 0.7)}
FIELD_OF_VIEW_MM = 184.0
# Slice positions (MNI mm, across the plane) that still cut a good part of the brain.
SLICE_RANGE_MM = {"sagittal": (-60.0, 60.0), "coronal": (-95.0, 60.0)}


@dataclass(frozen=True)
class DemoCorpus:
    """Grayscale images in [-1, 1] (N, H, W) with their captions and how each was made."""

    images: np.ndarray
    captions: list[str]
    orientations: list[str]
    contrasts: list[str]
    slice_positions_mm: np.ndarray


@dataclass(frozen=True)
class _Anatomy:
    csf: np.ndarray
    grey: np.ndarray
    white: np.ndarray
    affine: np.ndarray
    centre_mm: np.ndarray


def caption(contrast: str, orientation: str) -> str:
    """Generic caption of one corpus image, in the style of the task prompts but naming no task."""
    return f"MRI {contrast} {orientation} brain slice"


def build_demo_corpus(n_images: int, image_size: int = 64, seed: int = 0, show_progress: bool = True) -> DemoCorpus:
    """Draw `n_images` slices: random plane, contrast, position, rotation, zoom, bias field and noise."""
    if n_images < 1 or image_size < 8:
        raise ValueError(f"need n_images >= 1 and image_size >= 8, got {n_images}, {image_size}")
    anatomy = _anatomy()
    images = np.empty((n_images, image_size, image_size), np.float32)
    captions, orientations, contrasts, positions = [], [], [], []
    for index in tqdm(range(n_images), desc="demo corpus", unit="image", disable=not show_progress):
        rng = np.random.default_rng([seed, index])
        orientation = ORIENTATIONS[rng.integers(len(ORIENTATIONS))]
        contrast = list(CONTRASTS)[rng.integers(len(CONTRASTS))]
        position = rng.uniform(*SLICE_RANGE_MM[orientation])
        images[index] = _render_slice(anatomy, orientation, contrast, position, image_size, rng)
        captions.append(caption(contrast, orientation))
        orientations.append(orientation)
        contrasts.append(contrast)
        positions.append(position)
    return DemoCorpus(images, captions, orientations, contrasts, np.array(positions))


@functools.lru_cache(maxsize=1)
def _anatomy() -> _Anatomy:
    """Tissue probability maps of the MNI152 template (1 mm, RAS); CSF is the brain mask minus GM and WM."""
    loaders = (datasets.load_mni152_gm_template, datasets.load_mni152_wm_template, datasets.load_mni152_brain_mask)
    grey, white, mask = (np.ascontiguousarray(load(resolution=1).get_fdata(), np.float32) for load in loaders)
    csf = np.clip(mask - grey - white, 0.0, 1.0)
    affine = datasets.load_mni152_brain_mask(resolution=1).affine
    inside = np.argwhere(mask > 0.5)
    centre_voxel = (inside.min(axis=0) + inside.max(axis=0)) / 2.0
    centre_mm = affine[:3, :3] @ centre_voxel + affine[:3, 3]
    return _Anatomy(csf, grey, white, affine, centre_mm)


def _render_slice(
    anatomy: _Anatomy, orientation: str, contrast: str, position_mm: float, size: int, rng: np.random.Generator
) -> np.ndarray:
    """One slice in display orientation (superior up; anterior left on sagittal, patient right left on coronal)."""
    signal = np.array(CONTRASTS[contrast]) * rng.uniform(0.9, 1.1, size=3)
    axis = 0 if orientation == "sagittal" else 1
    index = int(round((position_mm - anatomy.affine[axis, 3]) / anatomy.affine[axis, axis]))
    volumes = (anatomy.csf, anatomy.grey, anatomy.white)
    tissue = sum(weight * _plane(volume, axis, index) for weight, volume in zip(signal, volumes))
    in_plane = [a for a in range(3) if a != axis]
    # Display rows run superior → inferior and columns along the reversed in-plane axis (y for sagittal, x for
    # coronal), so the template centre's display position follows from the same flips.
    centre_voxel = np.linalg.solve(anatomy.affine[:3, :3], anatomy.centre_mm - anatomy.affine[:3, 3])
    rows, cols = tissue.shape
    centre = (cols - 1 - centre_voxel[in_plane[0]], rows - 1 - centre_voxel[in_plane[1]])
    image = _warp(tissue, centre, rng)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    image *= _bias_field(size, rng)
    image += rng.normal(0.0, rng.uniform(0.005, 0.03), image.shape).astype(np.float32)
    image /= max(np.percentile(image, 99.5), 1e-6)
    return np.clip(image * 2.0 - 1.0, -1.0, 1.0)


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D plane at `index` along `axis`, rows superior → inferior, columns reversed along the other axis."""
    plane = volume[index] if axis == 0 else volume[:, index]
    return np.ascontiguousarray(plane.T[::-1, ::-1])


def _warp(plane: np.ndarray, centre_xy: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Small random rotation, zoom and shift into a square field of view of FIELD_OF_VIEW_MM at 1 mm."""
    side = int(FIELD_OF_VIEW_MM)
    angle = rng.uniform(-10.0, 10.0)
    zoom = rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D(centre_xy, angle, zoom)
    matrix[:, 2] += np.array([side / 2.0, side / 2.0]) - np.array(centre_xy) + rng.uniform(-6.0, 6.0, size=2)
    return cv2.warpAffine(plane.astype(np.float32), matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _bias_field(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative intensity inhomogeneity of up to about ±15 %, as coils produce."""
    grid = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    a, b, c = rng.uniform(-0.1, 0.1, size=3)
    return (1.0 + a * x + b * y + c * x * y).astype(np.float32)
