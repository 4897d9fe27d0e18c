"""Does a single global intensity statistic of a slice give its label away?

If it does, a classifier (and FID per class) can score well without looking at the lesion: a shortcut. On the
phantoms this must not happen; on real data it is worth knowing.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

STATISTICS = {
    "mean": np.mean,
    "std": np.std,
    "median": np.median,
    "p01": lambda x: np.percentile(x, 1),
    "p05": lambda x: np.percentile(x, 5),
    "p25": lambda x: np.percentile(x, 25),
    "p75": lambda x: np.percentile(x, 75),
    "p95": lambda x: np.percentile(x, 95),
    "p99": lambda x: np.percentile(x, 99),
    "max": np.max,
    "nonzero_fraction": lambda x: np.mean(x > 0),
    "nonzero_mean": lambda x: x[x > 0].mean() if (x > 0).any() else 0.0,
}


def statistic_aucs(images: list[np.ndarray], labels: list[int]) -> pd.Series:
    """ROC AUC of each statistic as a tumour score, folded to ≥ 0.5 (either direction counts as separating)."""
    if len(set(labels)) != 2:
        raise ValueError("need both labels to measure separability")
    aucs = {}
    for name, statistic in STATISTICS.items():
        auc = roc_auc_score(labels, [float(statistic(image)) for image in images])
        aucs[name] = max(auc, 1.0 - auc)
    return pd.Series(aucs, name="auc")
