"""The autoencoder ceiling as a figure: real test slices above the base model's VAE reconstructions of them.

Each tumour slice carries its lesion contrast (mean grey level inside the lesion minus that of the tissue just
around it) on the original and on the reconstruction, and the title gives the median share of that contrast the
VAE keeps: a lesion the VAE blurs away cannot be generated either, whatever the adapter. The same share, with a
bootstrap 95 % interval over the slices, is the tidy row `vae_lesion_contrast_kept` (method `vae_reconstruction`).
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage

from migros.evaluation.classifier_settings import VAE_RECONSTRUCTION
from migros.evaluation.statistics import INTERVAL_CONFIDENCE, TIDY_COLUMNS, percentile_bootstrap
from migros.images import read_gray

PER_CLASS = 8
RING_PX = 3  # width of the surrounding tissue a lesion is compared with
TISSUE_LEVEL = 0.05  # grey level (of 1) below which a pixel of the original slice is background, not tissue
# Lesions that barely differ from their surroundings in the original give no meaningful share of contrast kept.
MIN_ORIGINAL_CONTRAST = 0.02
LESION_CONTRAST_KEPT = "vae_lesion_contrast_kept"
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
        size = reconstruction.shape[::-1]  # slices and reconstructions are both at the dataset's image_size
        original = read_gray(entry.source_image, size)
        lesion = read_gray(metadata.loc[entry.source_image, "mask"], size) > 0.5
        tissue = original > TISSUE_LEVEL
        contrasts = [lesion_contrast(image, lesion, tissue) if entry.label else float("nan")
                     for image in (original, reconstruction)]
        rows.append({"label": int(entry.label), "original": original, "reconstruction": reconstruction,
                     "lesion": lesion, "original_contrast": contrasts[0], "reconstruction_contrast": contrasts[1]})
    return pd.DataFrame(rows)


def contrast_ratios(pairs: pd.DataFrame) -> np.ndarray:
    """Reconstruction contrast / original contrast of each tumour slice whose original lesion contrast is at least
    MIN_ORIGINAL_CONTRAST in size (1: the lesion intact, 0: gone)."""
    usable = pairs[pairs.original_contrast.abs() >= MIN_ORIGINAL_CONTRAST]
    return (usable.reconstruction_contrast / usable.original_contrast).to_numpy()


def contrast_kept(pairs: pd.DataFrame) -> tuple[float, int]:
    """Median of `contrast_ratios` and how many slices entered it."""
    ratios = contrast_ratios(pairs)
    return (float(np.median(ratios)) if ratios.size else float("nan")), ratios.size


def contrast_kept_rows(dataset: str, pairs: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """The tidy row of the median share of lesion contrast kept, its percentile-bootstrap 95 % interval over the
    slices (none for `resamples` 0) and the number of slices."""
    value, count = contrast_kept(pairs)
    lower = upper = np.nan
    if resamples and count:
        lower, upper = percentile_bootstrap(np.median, (contrast_ratios(pairs),), resamples, INTERVAL_CONFIDENCE, seed)
    return pd.DataFrame([(dataset, VAE_RECONSTRUCTION, LESION_CONTRAST_KEPT, value, lower, upper, count)],
                        columns=TIDY_COLUMNS)


def reconstruction_grid_figure(pairs: pd.DataFrame, title: str) -> Figure:
    """The first `PER_CLASS` tumour and healthy test slices of `reconstruction_pairs`, each original above its
    reconstruction; the lesion outline in red on both, each tumour image titled with its lesion contrast."""
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


def run_reconstruction_grid_stage(dataset: str, manifest_csv: Path, metadata_csv: Path, figure_png: Path,
                                  metrics_csv: Path, resamples: int, seed: int) -> None:
    """Everything the `reconstruction_grid` rule does: the figure and the tidy row of lesion contrast kept, from
    one reading of the images."""
    pairs = reconstruction_pairs(manifest_csv, metadata_csv)
    reconstruction_grid_figure(pairs, f"{dataset} / base model's VAE").savefig(figure_png, dpi=110)
    contrast_kept_rows(dataset, pairs, resamples, seed).to_csv(metrics_csv, index=False)
