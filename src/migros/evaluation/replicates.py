"""Training replicates (config finetune.replicates): one generated set per training run of a method, pooled.

A method's first replicate keeps the method's name (`lora_r4`); replicate k >= 1 is the set `lora_r4@k`, trained
with seed + k (workflow/rules/common.smk), so that adding a replicate runs only that replicate. Every stage scores
each set on its own; the metrics table then names every replicate explicitly (`lora_r4@0`, `lora_r4@1`, ...) and
gives the method's own name to the pooled value: the mean over replicates, with one replicate's `n` (images,
seeds). Its interval combines the Student-t interval of that mean (R − 1 degrees of freedom: the variance between
training runs, and the sampling noise the replicates do not share, as each generates from its own seeds) with the
replicates' mean interval half-width (the noise they share: the real reference images, the classifier's seeds and
test slices), as the root of the sum of squares; conservative where the two overlap. Beside
it, for the headline metrics, the standard deviation between replicates (its `n`: the number of replicates) and
the mean standard error within one, so that a reader sees which of the two dominates.
"""

import numpy as np
import pandas as pd
from scipy import stats

from migros.evaluation.statistics import INTERVAL_CONFIDENCE, TIDY_COLUMNS, seed_interval

SEPARATOR = "@"
SPREAD_METRICS = ("fid", "kid", "classifier_auc", "classifier_accuracy")
PROPORTION_PREFIXES = ("classifier_auc", "classifier_accuracy", "fidelity_")  # intervals clipped to [0, 1]
BETWEEN_SUFFIX, WITHIN_SUFFIX = "_between_replicate_sd", "_within_replicate_se"


def base_method(name: str) -> str:
    return name.split(SEPARATOR)[0]


def replicate_number(name: str) -> int:
    return int(name.split(SEPARATOR)[1]) if SEPARATOR in name else 0


def replicated_methods(names) -> dict[str, list[str]]:
    """{method: its sets in replicate order} for every method with a second replicate among `names` (sets such as
    `lora_r4`, `lora_r4@1`; also `synthetic_only:lora_r4@1`)."""
    names = list(dict.fromkeys(names))
    bases = {base_method(name) for name in names if SEPARATOR in name}
    return {base: sorted((name for name in names if base_method(name) == base), key=replicate_number)
            for base in sorted(bases)}


def explicit_replicate(name: str, replicated: dict[str, list[str]]) -> str:
    """`lora_r4` -> `lora_r4@0` where the method has replicates, so that the plain name is free for the pool."""
    return f"{name}{SEPARATOR}0" if name in replicated else name


def within_standard_error(row: pd.Series) -> float:
    """The standard error a tidy row's 95 % interval implies: Student-t over seeds for classifier scores (n seeds),
    normal for the bootstrap intervals over images."""
    quantile = (stats.t.ppf((1 + INTERVAL_CONFIDENCE) / 2, row.n - 1) if row.metric.startswith("classifier_")
                else stats.norm.ppf((1 + INTERVAL_CONFIDENCE) / 2))
    return float((row.upper - row.lower) / (2 * quantile))


def pool_replicates(metrics: pd.DataFrame) -> pd.DataFrame:
    """The tidy metrics with every replicate named explicitly and, per method with replicates, the pooled rows
    under the method's name and the between / within spread of the headline metrics. Unchanged without
    replicates."""
    replicated = replicated_methods(metrics.method.dropna())
    if not replicated:
        return metrics
    metrics = metrics.assign(method=metrics.method.map(lambda name: explicit_replicate(name, replicated)))
    rows = []
    for (dataset, method, metric), runs in metrics.assign(base=metrics.method.map(base_method)).groupby(
            ["dataset", "base", "metric"], sort=False):
        if method not in replicated or runs.method.nunique() < 2:
            continue
        values = runs.value.to_numpy(dtype=float)
        defined = values[~np.isnan(values)]
        if defined.size == 0:
            continue
        mean, _, upper = seed_interval(defined)
        between_half = upper - mean if np.ptp(defined) > 0 else 0.0
        # what the replicates share (the real reference images; the classifier's seeds and test slices) is in each
        # one's own interval and not in their spread: the pooled half-width holds both
        within_half = float(np.mean((runs.upper - runs.lower) / 2)) if runs.lower.notna().all() else 0.0
        half = float(np.hypot(between_half, within_half))
        lower, upper = (mean - half, mean + half) if half > 0 else (np.nan, np.nan)  # counts: the same in each
        if metric.startswith(PROPORTION_PREFIXES):
            lower, upper = max(lower, 0.0), min(upper, 1.0)
        rows.append((dataset, method, metric, mean, lower, upper, runs.n.iloc[0]))  # what one replicate's is from
        if metric in SPREAD_METRICS:
            rows.append((dataset, method, metric + BETWEEN_SUFFIX, float(np.std(defined, ddof=1)), np.nan, np.nan,
                         defined.size))
            within = [within_standard_error(row) for row in runs.itertuples()]
            rows.append((dataset, method, metric + WITHIN_SUFFIX, float(np.nanmean(within)), np.nan, np.nan,
                         defined.size))
    return pd.concat([metrics, pd.DataFrame(rows, columns=TIDY_COLUMNS)], ignore_index=True)[TIDY_COLUMNS]
