"""Background removal for synthetic slices before classification (paper §2.3: grayscale, Canny edges, morphology).

The fine-tuned models often hallucinate faint patterns in the dark background of brain slices; the paper removes
them with an edge-based mask. Here: Gaussian blur → Canny → morphological closing with the holes filled between
dilation and erosion → largest connected component, so the whole head (or pelvis) region is kept, not only its
outline, and everything outside it is set to 0.

The mask is found on the image resized to a fixed working size and resized back. Gradients of a soft edge fall
with the image size (the same boundary spans more pixels), so fixed Canny thresholds would find a 224 px head
but miss its blurry twin; at a fixed working size one set of pixel sizes and thresholds serves every image size.

Settings (`PostprocessSettings`: the `postprocess` section and the dataset's `postprocess` switch):
- `enabled`: False converts to grayscale only.
- `working_size`: longer side (px) of the image the mask is computed on.
- `blur_sigma`: Gaussian blur sigma (px at the working size; the kernel size follows from sigma, as in OpenCV
  with ksize (0, 0)).
- `canny_low`, `canny_high`: hysteresis thresholds of `cv2.Canny` on the blurred uint8 image.
- `closing_size`: diameter (px at the working size, odd) of the elliptical closing element; gaps in the outline
  up to about this size are bridged, and background artefacts closer than this to the head join its mask.
- `border_tissue_level`: blurred intensity (0-255) above which a pixel on the image border is tissue cut by the
  field of view; such border stretches close the outline, so a body wider than the image is kept whole.
- `min_foreground_fraction`: a mask smaller than this share of the image means the outline did not close; the
  image is then kept unchanged rather than erased.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from migros.images import open_image
from migros.settings import StageSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostprocessSettings(StageSettings):
    SECTION = "postprocess"
    enabled: bool  # the dataset's `postprocess`
    working_size: int
    blur_sigma: float
    canny_low: float
    canny_high: float
    closing_size: int
    border_tissue_level: float
    min_foreground_fraction: float


def foreground_mask(gray: np.ndarray, settings: PostprocessSettings) -> np.ndarray | None:
    """Boolean mask of the largest edge-bounded region of a uint8 grayscale image, at the image's size.

    None when no closed outline is found: no edges at all, or a region below `min_foreground_fraction` (an
    outline that did not close leaves only a thin curve, and masking with it would erase the image).
    """
    height, width = gray.shape
    scale = settings.working_size / max(height, width)
    working_shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(gray, working_shape, interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigmaX=settings.blur_sigma) if settings.blur_sigma > 0 else small
    edges = cv2.Canny(blurred, settings.canny_low, settings.canny_high)
    if not edges.any():
        return None
    # Tissue cut by the field of view (the pelvis in PI-CAI) has no edge where it leaves the image: its border
    # pixels close the outline instead, while the dark background's border stays open.
    border = np.ones_like(edges, dtype=bool)
    border[1:-1, 1:-1] = False
    edges[border & (blurred > settings.border_tissue_level)] = 255
    # A closing with the hole filling between its two halves: a plain closing leaves gaps in a thin edge
    # curve open (a disk slides through them), the dilation bridges them before the interior is filled.
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (settings.closing_size,) * 2)
    filled = ndimage.binary_fill_holes(cv2.dilate(edges, element) > 0)
    closed = cv2.erode(filled.astype(np.uint8), element)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    largest = (labels == 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))).astype(np.float32)
    mask = cv2.resize(largest, (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
    return mask if mask.mean() >= settings.min_foreground_fraction else None


def remove_background(image: Image.Image, settings: PostprocessSettings) -> tuple[Image.Image, float, bool]:
    """Grayscale image with the background set to 0, the kept fraction of pixels, and whether an outline was found.

    Disabled, or without a closed outline, the grayscale image is returned unchanged with a foreground fraction
    of 1.
    """
    gray = np.asarray(image.convert("L"))
    if not settings.enabled:
        return Image.fromarray(gray), 1.0, True
    mask = foreground_mask(gray, settings)
    if mask is None:
        return Image.fromarray(gray), 1.0, False
    return Image.fromarray(np.where(mask, gray, 0).astype(np.uint8)), float(mask.mean()), True


def run_postprocess_stage(
    manifest_csv: Path, settings: PostprocessSettings, images_dir: Path, output_manifest_csv: Path
) -> None:
    """Everything the `postprocess` rule does: post-processed copies of a generate manifest's images.

    The new PNGs keep their file names under `images_dir`; the output manifest has the input's columns with
    `file` pointing to the new image, plus `raw_file` (the untouched original) and `foreground_fraction`.
    """
    manifest = pd.read_csv(manifest_csv)
    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    files, fractions, without_outline = [], [], 0
    for raw_file in tqdm(manifest.file, desc="postprocess", unit="image"):
        processed, fraction, found_outline = remove_background(open_image(raw_file, "L"), settings)
        path = images_dir / Path(raw_file).name
        if path.resolve() == Path(raw_file).resolve():
            raise ValueError(f"{images_dir} holds the raw images; post-processed images need their own folder")
        processed.save(path)
        files.append(str(path))
        fractions.append(fraction)
        without_outline += not found_outline
    if without_outline:
        log.warning(
            "%d of %d images had no closed outline (no edges, or a mask below min_foreground_fraction) and were "
            "kept unchanged (grayscale only)", without_outline, len(manifest),
        )
    output = manifest.assign(file=files, raw_file=manifest.file, foreground_fraction=fractions)
    output.to_csv(output_manifest_csv, index=False)
