"""The autoencoder ceiling as a figure: real test slices above the base model's VAE reconstructions of them.

Each tumour slice carries its lesion contrast (mean grey level inside the lesion minus that of the tissue just
around it) on the original and on the reconstruction, and the title gives the median share of that contrast the
VAE keeps: a lesion the VAE blurs away cannot be generated either, whatever the adapter.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image
from scipy import ndimage

from migros.images import open_image, read_gray

PER_CLASS = 8
RING_PX = 3  # width of the surrounding tissue a lesion is compared with
TISSUE_LEVEL = 0.05  # grey level (of 1) below which a pixel of the original slice is background, not tissue
# Lesions that barely differ from their surroundings in the original give no meaningful share of contrast kept.
MIN_ORIGINAL_CONTRAST = 0.02
ROWS = ((1, "original"), (1, "VAE reconstruction"), (0, "original"), (0, "VAE reconstruction"))


def lesion_contrast(image: np.ndarray, lesion: np.ndarray, tissue: np.ndarray, ring_px: int = RING_PX) -> float:
    """Mean of `image` inside `lesion` minus its mean over the tissue in a `ring_px`-wide ring around the lesion
    (negative for a hypointense lesion, as prostate cancer on T2); NaN without a lesion or without tissue around."""
    lesion = np.asarray(lesion, dtype=bool)
    ring = ndimage.binary_dilation(lesion, iterations=ring_px) & ~lesion & np.asarray(tissue, dtype=bool)
    if not lesion.any() or not ring.any():
        return float("nan")
    return float(image[lesion].mean() - image[ring].mean())


def reconstruction_pairs(manifest_csv: Path, metadata_csv: Path) -> pd.DataFrame:
    """One row per reconstructed slice: label, original, reconstruction, mask and both lesion contrasts
    (NaN for healthy slices)."""
    manifest = pd.read_csv(manifest_csv)
    metadata = pd.read_csv(metadata_csv).set_index("image")
    unknown = sorted(set(manifest.source_image) - set(metadata.index))
    if unknown:
        raise ValueError(f"{manifest_csv} reconstructs slices that {metadata_csv} does not list: {unknown[:3]}")
    rows = []
    for entry in manifest.itertuples():
        reconstruction = read_gray(entry.file)
        size = reconstruction.shape[::-1]
        original = read_gray(entry.source_image)
        if original.shape != reconstruction.shape:  # slices written at another size than the model's input
            original = np.asarray(Image.fromarray(original).resize(size, Image.Resampling.BILINEAR))
        mask_path = metadata.loc[entry.source_image, "mask"]
        lesion = np.asarray(open_image(mask_path, "L").resize(size, Image.Resampling.NEAREST)) > 127
        tissue = original > TISSUE_LEVEL
        contrasts = [lesion_contrast(image, lesion, tissue) if entry.label else float("nan")
                     for image in (original, reconstruction)]
        rows.append({"label": int(entry.label), "original": original, "reconstruction": reconstruction,
                     "lesion": lesion, "original_contrast": contrasts[0], "reconstruction_contrast": contrasts[1]})
    return pd.DataFrame(rows)


def contrast_kept(pairs: pd.DataFrame) -> tuple[float, int]:
    """Median over the tumour slices of reconstruction contrast / original contrast, and how many slices entered
    it (those whose original lesion contrast is at least MIN_ORIGINAL_CONTRAST in size)."""
    usable = pairs[pairs.original_contrast.abs() >= MIN_ORIGINAL_CONTRAST]
    if usable.empty:
        return float("nan"), 0
    return float((usable.reconstruction_contrast / usable.original_contrast).median()), len(usable)


def reconstruction_grid_figure(manifest_csv: Path, metadata_csv: Path, title: str) -> Figure:
    """The first `PER_CLASS` tumour and healthy test slices, each original above its reconstruction; the lesion
    outline in red on both, each tumour image titled with its lesion contrast."""
    pairs = reconstruction_pairs(manifest_csv, metadata_csv)
    figure = Figure(figsize=(1.7 * PER_CLASS, 2.1 * len(ROWS)))
    axes = figure.subplots(len(ROWS), PER_CLASS)
    for row_axes, (label, kind) in zip(axes, ROWS):
        examples = pairs[pairs.label == label].head(PER_CLASS)
        row_axes[0].text(-0.08, 0.5, f"{'tumour' if label else 'healthy'}\n{kind}", transform=row_axes[0].transAxes,
                         ha="right", va="center", fontsize=8)
        image_column = "original" if kind == "original" else "reconstruction"
        for axis, example in zip(row_axes, list(examples.itertuples()) + [None] * PER_CLASS):
            axis.axis("off")
            if example is None:
                continue
            axis.imshow(getattr(example, image_column), cmap="gray", vmin=0, vmax=1)
            if label:
                axis.contour(example.lesion, levels=[0.5], colors="red", linewidths=0.6)
                axis.set_title(f"lesion contrast {getattr(example, f'{image_column}_contrast'):+.2f}", fontsize=6)
    kept, count = contrast_kept(pairs)
    summary = (f"median lesion contrast kept: {kept:.0%} over {count} tumour slices" if count
               else "no tumour slice with a visible lesion contrast")
    figure.suptitle(f"{title}: real test slices and their VAE reconstructions (red: lesion outline); {summary}",
                    fontsize=9)
    figure.tight_layout()
    return figure


def write_reconstruction_grid(manifest_csv: Path, metadata_csv: Path, path: Path, title: str) -> None:
    reconstruction_grid_figure(manifest_csv, metadata_csv, title).savefig(path, dpi=110)
