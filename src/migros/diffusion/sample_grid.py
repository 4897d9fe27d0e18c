"""A grid of generated images, tumour prompts above healthy ones, for the report."""

from pathlib import Path
from textwrap import fill

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

PER_CLASS = 8


def write_sample_grid(manifest_csv: Path, path: Path, title: str) -> None:
    manifest = pd.read_csv(manifest_csv)
    figure, axes = plt.subplots(2, PER_CLASS, figsize=(1.7 * PER_CLASS, 4.4))
    for row, label in enumerate((1, 0)):
        examples = manifest[manifest.label == label].head(PER_CLASS)
        for axis, example in zip(axes[row], list(examples.itertuples()) + [None] * PER_CLASS):
            axis.axis("off")
            if example is None:
                continue
            axis.imshow(Image.open(example.file).convert("L"), cmap="gray", vmin=0, vmax=255)
            axis.set_title(fill(example.prompt.split(",", 1)[-1].strip(), 22), fontsize=6)
    figure.suptitle(f"{title}: first {PER_CLASS} tumour (top) and healthy (bottom) images, raw", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
