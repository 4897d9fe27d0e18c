"""A grid of generated images for the report: tumour and healthy prompts, each raw and post-processed."""

from pathlib import Path
from textwrap import fill

import pandas as pd
from matplotlib.figure import Figure

from migros.images import open_image

PER_CLASS = 8
ROWS = ((1, "raw"), (1, "post-processed"), (0, "raw"), (0, "post-processed"))


def sample_grid_figure(raw_manifest_csv: Path, postprocessed_manifest_csv: Path, title: str) -> Figure:
    """The first `PER_CLASS` images of each label; the post-processed row shows the same images as the raw row."""
    manifests = {"raw": pd.read_csv(raw_manifest_csv), "post-processed": pd.read_csv(postprocessed_manifest_csv)}
    figure = Figure(figsize=(1.7 * PER_CLASS, 2.2 * len(ROWS)))
    axes = figure.subplots(len(ROWS), PER_CLASS)
    for row_axes, (label, stage) in zip(axes, ROWS):
        examples = manifests[stage][manifests[stage].label == label].head(PER_CLASS)
        row_axes[0].text(-0.08, 0.5, f"{'tumour' if label else 'healthy'}\n{stage}", transform=row_axes[0].transAxes,
                         ha="right", va="center", fontsize=8)
        for axis, example in zip(row_axes, list(examples.itertuples()) + [None] * PER_CLASS):
            axis.axis("off")
            if example is None:
                continue
            axis.imshow(open_image(example.file, "L"), cmap="gray", vmin=0, vmax=255)
            axis.set_title(fill(example.prompt.split(",", 1)[-1].strip(), 22), fontsize=6)
    figure.suptitle(f"{title}: first {PER_CLASS} tumour-prompt and healthy-prompt images", fontsize=9)
    figure.tight_layout()
    return figure


def write_sample_grid(raw_manifest_csv: Path, postprocessed_manifest_csv: Path, path: Path, title: str) -> None:
    sample_grid_figure(raw_manifest_csv, postprocessed_manifest_csv, title).savefig(path, dpi=110)
