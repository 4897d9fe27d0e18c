"""One tidy table of every number the pipeline produces: results/metrics.csv.

Columns: dataset, method, metric, value, lower, upper, n (`migros.evaluation.statistics.TIDY_COLUMNS`). The FID
and classifier stages write these rows themselves (FID and KID with bootstrap 95 % intervals over images;
classifier metrics with Student-t 95 % intervals over seeds); this module concatenates them and adds the rows of
the memorisation check and of training (fine-tuning or a GAN's), which have no interval. `n` counts what the value is computed from
(images for FID, KID, prdc and memorisation, seeds for the classifier). Method names are the config's, plus
`no_adaptation` (the base model), `real_only` (classifier without synthetic images), `synthetic_only:X`
(classifier trained on X's synthetic images alone), `real_train` (the real training split scored like a
generated set: the floor of FID and KID) and `real_test` (the real test images in the memorisation check); a
reader study's rows name a compared pair "A vs B", or `all_comparisons`, and put the reader in the metric
(`reader_preference[alice]`; `migros.reader_study.statistics`).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from migros.evaluation.replicates import pool_replicates
from migros.evaluation.statistics import TIDY_COLUMNS

COLUMNS = TIDY_COLUMNS
REAL_TRAIN = "real_train"
NO_ADAPTATION = "no_adaptation"  # the base model without an adapter (common.smk names its rules the same)
# metric name: its key in a training stage's summary.json (training_seconds: of the last run, if it was resumed)
TRAINING_METRICS = {"trainable_parameters": "trainable_parameters", "steps": "steps",
                    "training_seconds": "seconds_this_run"}
FINETUNE_METRICS = {**TRAINING_METRICS, "final_rank_total": "final_rank_total", "final_rank_max": "final_rank_max"}
# source kind: what its summaries give (StyleGAN3's parameters are in its pickle, which only its own env reads)
SUMMARY_METRICS = {"finetune": FINETUNE_METRICS, "gan": TRAINING_METRICS,
                   "stylegan3": {"steps": "steps", "training_seconds": "seconds_this_run"}}
# privacy: the membership-inference audit; lesion_contrast: the share of lesion contrast the VAE keeps;
# reader_study: the statistics of a reader study's answers (migros.reader_study.statistics)
TIDY_SOURCES = ("fid", "fid_floor", "classifier", "privacy", "lesion_contrast", "reader_study")


def read_tidy(path: Path) -> pd.DataFrame:
    """A stage's own tidy rows; an error names the file when its columns are not the tidy ones."""
    rows = pd.read_csv(path)
    if list(rows.columns) != COLUMNS:
        raise ValueError(f"{path} has columns {list(rows.columns)}, not the tidy {COLUMNS}: rerun the stage that wrote it")
    return rows


def point(dataset: str, method: str, metric: str, value: float, n: int) -> dict:
    return {"dataset": dataset, "method": method, "metric": metric, "value": value, "lower": np.nan, "upper": np.nan,
            "n": n}


def memorisation_rows(dataset: str, method: str, summary_json: Path) -> tuple[list[dict], list[dict]]:
    """Median nearest-neighbour SSIM, share of near-copies and share closer to a training image than any real test
    image is, and the first two for the real test images (method `real_test`): what distinct patients score."""
    summary = json.loads(Path(summary_json).read_text())
    rows = [
        point(dataset, method, "memorisation_median_ssim", summary["median_ssim"], summary["n"]),
        point(dataset, method, "memorisation_near_copy_share", summary["share_near_copies"], summary["n"]),
        point(dataset, method, "memorisation_closer_than_any_patient_share", summary["share_above_real_vs_real_max"],
              summary["n"]),
    ]
    reference = [
        point(dataset, "real_test", "memorisation_median_ssim", summary["real_vs_real_median"], summary["real_vs_real_n"]),
        point(dataset, "real_test", "memorisation_near_copy_share", summary["real_vs_real_share_at_threshold"],
              summary["real_vs_real_n"]),
    ]
    return rows, reference


def summary_rows(dataset: str, method: str, summary_json: Path, metrics: dict[str, str]) -> list[dict]:
    """The training figures of one method from its summary.json; `metrics` maps metric names to summary keys."""
    summary = json.loads(Path(summary_json).read_text())
    return [point(dataset, method, metric, summary[key], 1) for metric, key in metrics.items()]


def collect_metrics(sources: dict[str, list[tuple[str, str | None, Path]]]) -> pd.DataFrame:
    """`sources` maps a kind (fid, fid_floor, classifier, privacy, lesion_contrast, reader_study, memorisation, finetune, gan, stylegan3) to its result files, each with
    its dataset and method (None where one file holds every method of a dataset). The tidy kinds are taken as
    their stages wrote them. A method trained more than once gets its replicates named and pooled
    (`migros.evaluation.replicates`)."""
    tables = [read_tidy(path) for kind in TIDY_SOURCES for _, _, path in sources.get(kind, [])]
    rows, real_references = [], {}
    for dataset, method, path in sources.get("memorisation", []):
        synthetic, reference = memorisation_rows(dataset, method, path)
        rows += synthetic
        real_references[dataset] = reference  # the same in every method's summary of a dataset
    for reference in real_references.values():
        rows += reference
    for kind, metrics in SUMMARY_METRICS.items():
        for dataset, method, path in sources.get(kind, []):
            rows += summary_rows(dataset, method, path, metrics)
    collected = pd.concat([*tables, pd.DataFrame(rows, columns=COLUMNS)], ignore_index=True)[COLUMNS]
    return pool_replicates(collected)
