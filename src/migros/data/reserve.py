"""The positive control: the reserve split's real slices, written as if a method had generated them.

A perfect generator would produce images indistinguishable from further real patients. The reserve split holds
such patients (drawn like train and test, used by neither), and the generated set `real_reserve` is their slices
with the prompts they would have been trained with. Every evaluation stage scores it as a method, so the report
shows the upper bound of what a generator could add at that many images, and whether the statistics find an
effect where one exists.
"""

import logging
import shutil
from pathlib import Path

import pandas as pd

from migros.prompts import PromptSettings, split_prompts

log = logging.getLogger(__name__)

REAL_RESERVE = "real_reserve"
RESERVE_SPLIT = "reserve"
MANIFEST_COLUMNS = ["file", "prompt", "label", "case", "patient"]


def reserve_manifest(metadata: pd.DataFrame, prompts: PromptSettings, images_dir: Path) -> pd.DataFrame:
    """One row per reserve slice, as a generate manifest has (file, prompt, label) plus the case and patient."""
    reserve = metadata[metadata.split == RESERVE_SPLIT]
    if reserve.empty:
        raise ValueError("the metadata has no reserve split: set datasets.<name>.split.reserve to a positive count")
    prompted = split_prompts(metadata, prompts, split=RESERVE_SPLIT)
    files = [str(images_dir / Path(image).name) for image in reserve.image]
    return pd.DataFrame({"file": files, "prompt": prompted.prompt.to_numpy(), "label": reserve.label.to_numpy(),
                         "case": reserve.case.to_numpy(), "patient": reserve.patient.to_numpy()},
                        columns=MANIFEST_COLUMNS)


def write_reserve_set(metadata_csv: Path, prompts: PromptSettings, images_dir: Path, manifest_csv: Path) -> None:
    """The `real_reserve` rule: the reserve slices copied to `images_dir` and their manifest (copies, so that the
    set sits where every generated set does and no later stage reads into the slice folder)."""
    metadata = pd.read_csv(metadata_csv)
    manifest = reserve_manifest(metadata, prompts, images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    for source, target in zip(metadata.image[metadata.split == RESERVE_SPLIT], manifest.file):
        shutil.copyfile(source, target)
    manifest_csv.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(manifest_csv, index=False)
    log.info("%s: %d real slices (%d with a lesion) from %d patients", REAL_RESERVE, len(manifest),
             int(manifest.label.sum()), manifest.patient.nunique())
