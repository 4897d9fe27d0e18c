"""One tidy table of every number the pipeline produces: results/metrics.csv.

Columns: dataset, method, metric, value, lower, upper, std, n. `n` counts what the value is computed from (images
for FID, KID and memorisation, seeds for the classifier), `lower`/`upper` bound a 95 % interval where the stage
computed one (FID and KID), `std` is across seeds where there are seeds. Method names are the
config's, plus `no_adaptation` (the base model), `real_only` (classifier without synthetic images) and
`real_train` (the real training split scored like a generated set: the floor of FID and KID) and `real_test`
(the real test images in the memorisation check).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["dataset", "method", "metric", "value", "lower", "upper", "std", "n"]
REAL_ONLY = "real_only"
REAL_TRAIN = "real_train"
FINETUNE_METRICS = ("trainable_parameters", "final_rank_total", "final_rank_max", "steps")


def fid_rows(dataset: str, method: str, scores_csv: Path) -> list[dict]:
    """The FID stage's tidy rows (fid, kid, precision, ... over all images and per class: `fid_healthy`, ...)."""
    scores = pd.read_csv(scores_csv)
    return [
        {"dataset": dataset, "method": method, "metric": row.metric, "value": row.value, "lower": row.lower,
         "upper": row.upper, "std": np.nan, "n": row.n}
        for row in scores.itertuples()
    ]


def classifier_rows(dataset: str, per_seed_csv: Path) -> list[dict]:
    """AUC and accuracy per condition over the seeds, and the training-set sizes; `real+X` becomes method X."""
    per_seed = pd.read_csv(per_seed_csv)
    rows = []
    for condition, seeds in per_seed.groupby("condition", sort=False):
        method = REAL_ONLY if condition == "real" else condition.removeprefix("real+")
        for column in ("auc", "accuracy"):
            rows.append({"dataset": dataset, "method": method, "metric": f"classifier_{column}",
                         "value": seeds[column].mean(), "std": seeds[column].std(ddof=1), "n": len(seeds)})
        for column in ("n_train_real", "n_train_synthetic", "epochs"):
            rows.append({"dataset": dataset, "method": method, "metric": f"classifier_{column}",
                         "value": seeds[column].iloc[0], "std": np.nan, "n": len(seeds)})
    return rows


def fidelity_rows(dataset: str, fidelity_csv: Path) -> list[dict]:
    """Prompt fidelity per method, mean and std over the seeds of the real-only classifier."""
    per_seed = pd.read_csv(fidelity_csv)
    names = {"tumour_recall_on_tumour_prompts": "fidelity_tumour_prompts",
             "healthy_recall_on_healthy_prompts": "fidelity_healthy_prompts"}
    rows = []
    for method, seeds in per_seed.groupby("method", sort=False):
        for column, metric in names.items():
            rows.append({"dataset": dataset, "method": method, "metric": metric, "value": seeds[column].mean(),
                         "std": seeds[column].std(ddof=1), "n": len(seeds)})
    return rows


def memorisation_rows(dataset: str, method: str, summary_json: Path) -> tuple[list[dict], list[dict]]:
    """Median nearest-neighbour SSIM, share of near-copies and share closer to a training image than any real test
    image is, and the first two for the real test images (method `real_test`): what distinct patients score."""
    summary = json.loads(Path(summary_json).read_text())
    rows = [
        {"dataset": dataset, "method": method, "metric": "memorisation_median_ssim", "value": summary["median_ssim"],
         "std": np.nan, "n": summary["n"]},
        {"dataset": dataset, "method": method, "metric": "memorisation_near_copy_share",
         "value": summary["share_near_copies"], "std": np.nan, "n": summary["n"]},
        {"dataset": dataset, "method": method, "metric": "memorisation_closer_than_any_patient_share",
         "value": summary["share_above_real_vs_real_max"], "std": np.nan, "n": summary["n"]},
    ]
    reference = [
        {"dataset": dataset, "method": "real_test", "metric": "memorisation_median_ssim",
         "value": summary["real_vs_real_median"], "std": np.nan, "n": summary["real_vs_real_n"]},
        {"dataset": dataset, "method": "real_test", "metric": "memorisation_near_copy_share",
         "value": summary["real_vs_real_share_at_threshold"], "std": np.nan, "n": summary["real_vs_real_n"]},
    ]
    return rows, reference


def finetune_rows(dataset: str, method: str, summary_json: Path) -> list[dict]:
    summary = json.loads(Path(summary_json).read_text())
    return [{"dataset": dataset, "method": method, "metric": metric, "value": summary[metric], "std": np.nan, "n": 1}
            for metric in FINETUNE_METRICS]


def collect_metrics(sources: dict[str, list[tuple[str, str | None, Path]]]) -> pd.DataFrame:
    """`sources` maps a kind (fid, fid_floor, classifier, fidelity, memorisation, finetune) to its result files,
    each with its dataset and method (None where one file holds every method of a dataset)."""
    rows, real_references = [], {}
    for dataset, method, path in sources.get("fid", []):
        rows += fid_rows(dataset, method, path)
    for dataset, _, path in sources.get("fid_floor", []):
        rows += fid_rows(dataset, REAL_TRAIN, path)
    for dataset, _, path in sources.get("classifier", []):
        rows += classifier_rows(dataset, path)
    for dataset, _, path in sources.get("fidelity", []):
        rows += fidelity_rows(dataset, path)
    for dataset, method, path in sources.get("memorisation", []):
        synthetic, reference = memorisation_rows(dataset, method, path)
        rows += synthetic
        real_references[dataset] = reference  # the same in every method's summary of a dataset
    for reference in real_references.values():
        rows += reference
    for dataset, method, path in sources.get("finetune", []):
        rows += finetune_rows(dataset, method, path)
    return pd.DataFrame(rows, columns=COLUMNS)
