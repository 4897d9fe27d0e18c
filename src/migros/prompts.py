"""Text prompts from lesion masks (paper, section 2.2): size class and, where the template asks, 3×3 position.

Size classes use the lesion's share of the image area. Position is the lesion centroid on a 3×3 grid laid over
the bounding box of the anatomy (non-background pixels), not over the whole image, because the anatomy fills only
the middle of a BraTS slice; "left"/"right" are image sides as displayed (radiological convention: image left is
the patient's right).
"""

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from migros.images import read_gray
from migros.settings import StageSettings

ROWS = ("top", "center", "bottom")
COLUMNS = ("left", "center", "right")
FOREGROUND_LEVEL = 0.05  # normalised intensity above which a pixel counts as anatomy


@dataclass(frozen=True)
class SizeThresholds:
    small_below: float
    large_from: float

    def __post_init__(self):
        # the schema bounds each threshold, not their order
        if self.small_below > self.large_from:
            raise ValueError(f"datasets.<name>.prompts.size_thresholds: small_below ({self.small_below}) must not be "
                             f"above large_from ({self.large_from})")


@dataclass(frozen=True)
class PromptSettings(StageSettings):
    """A dataset's `prompts` section: the templates and size classes of its training prompts."""

    SECTION = "datasets.<name>.prompts"
    positive: str
    negative: str
    size_thresholds: SizeThresholds


@dataclass(frozen=True)
class GenerationPromptSettings(StageSettings):
    """The keys of the `generation` section that draw the generation prompts (not the sampler's)."""

    SECTION = "generation (prompts)"
    images: int
    seed: int


def size_class(area_fraction: float, small_below: float, large_from: float) -> str:
    if area_fraction < small_below:
        return "small"
    return "large" if area_fraction >= large_from else "medium"


def grid_position(mask: np.ndarray, image: np.ndarray) -> str:
    """'top left' … 'bottom right'; the middle cell is just 'center'."""
    if not mask.any():
        raise ValueError("cannot place an empty lesion mask")
    anatomy = image > FOREGROUND_LEVEL
    rows, cols = np.nonzero(anatomy if anatomy.any() else np.ones_like(mask))
    lesion_rows, lesion_cols = np.nonzero(mask)
    cell = []
    for centre, low, high, names in (
        (lesion_rows.mean(), rows.min(), rows.max() + 1, ROWS),
        (lesion_cols.mean(), cols.min(), cols.max() + 1, COLUMNS),
    ):
        third = int(np.clip((centre - low) / (high - low) * 3, 0, 2))
        cell.append(names[third])
    return "center" if cell == ["center", "center"] else " ".join(cell)


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def check_templates(positive: str, negative: str) -> None:
    allowed = {"size", "position"}
    for name, template in (("positive", positive), ("negative", negative)):
        unknown = template_fields(template) - allowed
        if unknown:
            raise ValueError(f"{name} prompt template {template!r} has unknown fields {sorted(unknown)}; allowed: {sorted(allowed)}")
    if template_fields(negative):
        raise ValueError(f"negative prompt template {negative!r} must not contain fields")


def train_prompts(metadata: pd.DataFrame, positive: str, negative: str, small_below: float, large_from: float,
                  split: str = "train") -> pd.DataFrame:
    """One prompt per image of `split` (the training images unless told), built as for training: (image, prompt,
    label, size, position)."""
    check_templates(positive, negative)
    wants_position = "position" in template_fields(positive)
    rows = []
    for case in metadata[metadata.split == split].itertuples():
        size = position = ""
        if case.label:
            size = size_class(case.lesion_area_fraction, small_below, large_from)
            if wants_position:
                image = read_gray(case.image)
                position = grid_position(read_gray(case.mask, image.shape[::-1]) > 0.5, image)
            prompt = positive.format(size=size, position=position)
        else:
            prompt = negative
        rows.append({"image": case.image, "prompt": prompt, "label": case.label, "size": size, "position": position})
    return pd.DataFrame(rows, columns=["image", "prompt", "label", "size", "position"])


def split_prompts(metadata: pd.DataFrame, settings: PromptSettings, split: str = "train") -> pd.DataFrame:
    """`train_prompts` of one split with a dataset's prompt settings."""
    thresholds = settings.size_thresholds
    return train_prompts(metadata, settings.positive, settings.negative, thresholds.small_below,
                         thresholds.large_from, split=split)


def generation_prompts(train: pd.DataFrame, n_images: int, seed: int) -> pd.DataFrame:
    """n_images prompts, half healthy; tumour prompts drawn from the training prompts, so that sizes and
    positions follow the training distribution. Image i has its own seed (seed + i): any subset regenerates
    identically."""
    healthy = train[train.label == 0].prompt.unique()
    tumour = train[train.label == 1].prompt.to_numpy()
    if len(healthy) != 1 or len(tumour) == 0:
        raise ValueError("training prompts need exactly one healthy prompt and at least one tumour prompt")
    rng = np.random.default_rng(seed)
    n_healthy = n_images // 2
    prompts = np.concatenate([rng.choice(tumour, size=n_images - n_healthy), np.repeat(healthy, n_healthy)])
    labels = np.concatenate([np.ones(n_images - n_healthy, int), np.zeros(n_healthy, int)])
    order = rng.permutation(n_images)
    return pd.DataFrame(
        {"index": np.arange(n_images), "prompt": prompts[order], "label": labels[order], "seed": seed + np.arange(n_images)}
    )


def write_train_prompts(metadata_csv: Path, settings: PromptSettings, train_csv: Path) -> None:
    """Rule `train_prompts`: one prompt per training slice, from the dataset's prompt settings."""
    split_prompts(pd.read_csv(metadata_csv), settings).to_csv(train_csv, index=False)


def write_generation_prompts(train_csv: Path, settings: GenerationPromptSettings, generation_csv: Path) -> None:
    """Rule `generation_prompts`: its own rule, so that generation settings do not rerun the fine-tunes."""
    generation_prompts(pd.read_csv(train_csv), settings.images, settings.seed).to_csv(generation_csv, index=False)
