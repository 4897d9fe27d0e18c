"""Intervals and comparisons for the evaluation stages' numbers, and the one row shape they all write.

Two kinds of uncertainty occur. A score computed from one set of images (FID, KID) varies with which images were
drawn; `percentile_bootstrap` estimates that by resampling the images. A score repeated over a few training seeds
(classifier AUC) varies with the seed; `seed_interval` and `paired_comparison` treat the seeds as a small sample
and use Student's t.
"""

from collections.abc import Callable

import numpy as np
from scipy import stats

TIDY_COLUMNS = ["dataset", "method", "metric", "value", "lower", "upper", "n"]
"""Every evaluation stage writes rows of these columns: `lower`/`upper` bound the INTERVAL_CONFIDENCE interval
of `value` (NaN where there is none), `n` counts what the value is computed from (images, seeds)."""
INTERVAL_CONFIDENCE = 0.95


def bootstrap_values(
    statistic: Callable[..., float], samples: tuple[np.ndarray, ...], resamples: int, seed: int,
) -> np.ndarray:
    """`statistic(*resampled)` for `resamples` resamples, each array's rows drawn with replacement independently.

    Independent resampling suits statistics of unpaired sets (generated against real images). An array of row
    indices can stand for a set whose statistic reads precomputed matrices (see `fid.kid_bootstrap_interval`).
    """
    if resamples < 1:
        raise ValueError(f"a bootstrap needs at least one resample, got {resamples}")
    generator = np.random.default_rng(seed)
    values = np.empty(resamples)
    for resample in range(resamples):
        resampled = tuple(sample[generator.integers(0, len(sample), len(sample))] for sample in samples)
        values[resample] = statistic(*resampled)
    return values


def bootstrap_percentiles(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Lower tail, median and upper tail percentiles of the bootstrap values that are defined (not NaN).

    A statistic can be undefined on a resample (KID's within-set mean when a set drew one row only, which
    happens with a handful of images); such resamples are left out, and all of them undefined gives NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return np.nan, np.nan, np.nan
    tail = 100 * (1 - confidence) / 2
    lower, median, upper = np.percentile(defined, [tail, 50, 100 - tail])
    return float(lower), float(median), float(upper)


def percentile_bootstrap(
    statistic: Callable[..., float],
    samples: tuple[np.ndarray, ...],
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile interval of `statistic(*samples)` from the bootstrap values of `bootstrap_values`."""
    lower, _, upper = bootstrap_percentiles(bootstrap_values(statistic, samples, resamples, seed), confidence)
    return lower, upper


def recentred_bootstrap(
    statistic: Callable[..., float],
    samples: tuple[np.ndarray, ...],
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """The percentile interval moved so that the bootstrap median falls on `statistic(*samples)`.

    For statistics whose bias depends on the number of distinct rows: a resample holds only about 63 % distinct
    rows, so the bootstrap values of such a statistic are shifted from the estimate (FID at fewer images than
    dimensions rises, and its percentile interval can lie wholly above the estimate). The bootstrap is then used
    for the spread only, and the interval is about the value the statistic has at this number of rows.
    """
    estimate = statistic(*samples)
    lower, median, upper = bootstrap_percentiles(bootstrap_values(statistic, samples, resamples, seed), confidence)
    return estimate - (median - lower), estimate + (upper - median)


def t_half_width(differences: np.ndarray, confidence: float) -> float:
    """Half the width of the Student-t interval of the mean of `differences` (at least two values)."""
    quantile = stats.t.ppf((1 + confidence) / 2, df=len(differences) - 1)
    return float(quantile * differences.std(ddof=1) / np.sqrt(len(differences)))


def seed_interval(values, confidence: float = INTERVAL_CONFIDENCE) -> tuple[float, float, float]:
    """(mean, lower, upper): the Student-t interval of the mean of a score over training seeds.

    Why t and not a bootstrap: with 5 seeds a percentile bootstrap resamples only 5 values; its interval is
    roughly a normal-quantile interval with the 1/n variance of the 5 values, which ignores how uncertain that
    variance is, and a nominal 95 % interval then covers the mean in about 84 % of experiments (normal scores,
    simulated). The t interval is exact for normally distributed scores and robust enough for the mild skew of
    AUCs away from 0 and 1.
    With fewer than two seeds there is no spread to estimate, and the bounds are NaN.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("the mean over seeds needs at least one value")
    mean = float(values.mean())
    if values.size < 2:
        return mean, np.nan, np.nan
    half_width = t_half_width(values, confidence)
    return mean, mean - half_width, mean + half_width


def paired_comparison(a, b, confidence: float = INTERVAL_CONFIDENCE) -> dict:
    """Mean difference a − b over the same seeds, its t interval, the two-sided paired t-test's p-value and the
    standard deviation `sd` of the differences (what the test's power depends on).

    Pairing by seed removes what the seed does to both methods alike (data order, initialisation), so the test
    sees only how the methods differ. `distinguishable` is whether the interval excludes 0 (equivalently
    p < 1 − confidence). When the differences do not vary beyond rounding the t statistic is 0/0 (p = 1:
    nothing to find) or ±∞ (p = 0), and the interval is the difference itself; both are set directly instead of
    letting scipy warn about the cancellation and return NaN or a p-value of rounding noise.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-d arrays of equal length, got shapes {a.shape} and {b.shape}")
    differences = a - b
    difference, lower, upper = seed_interval(differences, confidence)
    # a − b is exact up to one rounding of the larger operand, so a spread below a few of those is no spread
    rounding = 4 * np.finfo(float).eps * max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    sd = float(differences.std(ddof=1)) if differences.size > 1 else np.nan
    if differences.size < 2:
        p_value = np.nan
    elif np.ptp(differences) <= rounding:
        difference = lower = upper = 0.0 if abs(difference) <= rounding else difference
        p_value, sd = 1.0 if difference == 0 else 0.0, 0.0
    else:
        p_value = float(stats.ttest_rel(a, b).pvalue)
    return {
        "difference": difference, "lower": lower, "upper": upper, "p_value": p_value, "n": int(differences.size),
        "distinguishable": bool(lower > 0 or upper < 0), "sd": sd,
    }
