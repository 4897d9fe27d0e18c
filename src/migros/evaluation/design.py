"""Evidence by design: what a run could have detected, what it would need, and intervals that cover training.

`statistics` says how uncertain one run's numbers are. This module says what such a run could have found at all:
the smallest difference a paired t-test over seeds detects with a given power (`minimum_detectable_difference`),
the same for a nested design of training replicates × classifier seeds or images (`nested_power`,
`planning_table`), how to keep the error rate of a report with many comparisons (`MULTIPLICITY_METHODS`), and an
interval for a score measured on several training replicates that covers the training variance
(`replicate_interval`). Power is computed exactly from the noncentral t distribution, not from a normal
approximation, because with 3 to 5 seeds the two differ a lot (at 3 seeds the t-test needs roughly twice the
difference the normal approximation claims).
"""

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, stats

from migros.evaluation.statistics import INTERVAL_CONFIDENCE, seed_interval

POWER_GOAL = 0.8
"""The power a design should reach: the convention under which a minimum detectable difference is quoted."""
SIGNIFICANCE = 0.05


def _check_levels(alpha: float, power: float | None = None) -> None:
    """Reject levels outside (0, 1), and a power goal a test reaches without any effect (power ≤ alpha)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if power is not None and not alpha < power < 1:
        raise ValueError(f"the power goal must lie strictly between alpha ({alpha}) and 1, got {power}")


def _t_test_power(effect: float, standard_error: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test of a mean with this standard error and degrees of freedom.

    The t statistic is noncentral t with noncentrality effect / standard error. Both tails count: a two-sided
    test that rejects in the wrong direction still rejects (it matters only for effects near 0).
    A standard error of 0 means a test without noise: it always rejects a nonzero effect, and at no effect it
    rejects at its nominal rate (the convention that keeps power(0) = alpha everywhere).
    """
    if np.isnan(standard_error) or np.isnan(effect) or not df >= 1:
        return np.nan
    if standard_error == 0:
        return 1.0 if effect != 0 else alpha
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = abs(effect) / standard_error
    # the lower tail as the upper tail at −noncentrality: scipy's nct.cdf far in the tail can return NaN
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


@lru_cache(maxsize=1024)
def _noncentrality_for_power(df: float, power: float, alpha: float) -> float:
    """The effect in standard errors at which the two-sided t-test with `df` degrees of freedom has `power`.

    Power rises monotonically from alpha at 0, so the root is bracketed by doubling an upper bound; df = 1 at
    80 % power needs about 16 standard errors, far beyond any normal-theory guess.
    """
    def shortfall(noncentrality: float) -> float:
        return _t_test_power(noncentrality, 1.0, df, alpha) - power

    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-12, rtol=1e-12))


def paired_t_power(effect: float, sd: float, n: int, alpha: float = SIGNIFICANCE) -> float:
    """Power of the two-sided paired (one-sample) t-test over n differences of standard deviation `sd`.

    What `statistics.paired_comparison` would find with probability `power` if the methods truly differed by
    `effect`: the t statistic is noncentral t with n − 1 degrees of freedom and noncentrality effect·√n / sd.
    NaN with fewer than two differences (no test) or an unknown sd; with sd = 0, 1 for a nonzero effect and
    alpha without one.
    """
    _check_levels(alpha)
    if n < 2:
        return np.nan
    return _t_test_power(effect, sd / np.sqrt(n), n - 1, alpha)


def minimum_detectable_difference(
    sd: float, n: int, power: float = POWER_GOAL, alpha: float = SIGNIFICANCE,
) -> float:
    """The smallest |mean difference| the paired t-test over n differences of standard deviation sd detects
    with probability `power`.

    Why report it: a comparison that finds nothing says "no difference larger than this", not "no difference";
    this is the size below which the run could not tell. NaN with fewer than two differences or an unknown sd,
    0 when the differences do not vary.
    """
    _check_levels(alpha, power)
    if n < 2 or np.isnan(sd):
        return np.nan
    return float(sd / np.sqrt(n) * _noncentrality_for_power(n - 1, power, alpha))


def _as_groups(values, replicates=None, value_column: str = "value", replicate_column: str = "replicate"):
    """Per-replicate value arrays from a data frame, values with replicate labels, or a list of arrays."""
    if isinstance(values, pd.DataFrame):
        return [group[value_column].to_numpy(dtype=float) for _, group in values.groupby(replicate_column)]
    if replicates is not None:
        values, replicates = np.asarray(values, dtype=float), np.asarray(replicates)
        if values.shape != replicates.shape or values.ndim != 1:
            raise ValueError(f"values and replicate labels need equal 1-d shapes, got {values.shape} and "
                             f"{replicates.shape}")
        return [values[replicates == label] for label in pd.unique(replicates)]
    return [np.asarray(group, dtype=float).ravel() for group in values]


def variance_components(
    values, replicates=None, value_column: str = "value", replicate_column: str = "replicate",
) -> tuple[float, float]:
    """(between-replicate variance, within-replicate variance) of a nested design, by one-way random-effects ANOVA.

    `values` is a data frame with a `replicate_column` and a `value_column`, or a 1-d array with one replicate
    label per value in `replicates`, or a list of per-replicate arrays. A replicate is one training run; the
    values within it are its units (classifier seeds, images). Why split the variance: more units shrink only the
    within part, so a design with training variance needs more replicates, not more seeds (see `nested_power`).
    Method of moments: within = the pooled within-replicate mean square; between = (between mean square −
    within) / n0, n0 the usual unbalanced-design mean replicate size, clipped at 0 (a negative estimate means no
    visible training variance). Between is NaN with one replicate (training variance cannot be seen); both are
    NaN when no replicate has two values.
    """
    groups = [group for group in _as_groups(values, replicates, value_column, replicate_column) if group.size]
    if not groups:
        raise ValueError("variance components need at least one value")
    sizes = np.array([group.size for group in groups])
    total = sizes.sum()
    within_df = total - len(groups)
    means = np.array([group.mean() for group in groups])
    squares = sum(((group - mean) ** 2).sum() for group, mean in zip(groups, means))
    within = squares / within_df if within_df else np.nan
    if len(groups) < 2 or np.isnan(within):
        return np.nan, float(within)
    grand_mean = (sizes * means).sum() / total
    between_mean_square = (sizes * (means - grand_mean) ** 2).sum() / (len(groups) - 1)
    mean_size = (total - (sizes ** 2).sum() / total) / (len(groups) - 1)
    return float(max(0.0, (between_mean_square - within) / mean_size)), float(within)


def _nested_standard_error_and_df(
    between_var: float, within_var: float, replicates: int, units_per_replicate: int,
) -> tuple[float, int]:
    """Standard error of the mean of replicate means and the degrees of freedom its estimate has (`nested_power`)."""
    if replicates < 1 or units_per_replicate < 1:
        raise ValueError(f"a design needs a replicate and a unit at least, got {replicates} × {units_per_replicate}")
    variance = between_var / replicates + within_var / (replicates * units_per_replicate)
    df = replicates - 1 if replicates > 1 and between_var > 0 else replicates * units_per_replicate - 1
    return float(np.sqrt(variance)), df


def nested_power(
    effect: float, between_var: float, within_var: float, replicates: int, units_per_replicate: int,
    alpha: float = SIGNIFICANCE,
) -> float:
    """Power of the two-sided t-test of the mean of replicate means, R replicates × S units each.

    The mean's variance is between/R + within/(R·S): more units per replicate shrink only the second term, so
    with training variance the power stops rising with seeds and only replicates help.
    Degrees of freedom: with training variance (between > 0) the replicate means are the independent
    observations, so the variance is estimated from R means with R − 1 df (a test that pooled all R·S units would
    ignore the between part and reject too often). Without it the units are all independent and the test uses
    R·S − 1 df. With R = 1 and between > 0 no test can estimate the training variance; the value is then what a
    test that knew it would reach with S − 1 df, an optimistic bound, and a real test on one replicate does not
    keep its false positive rate. NaN for unknown variances (pass between = 0 to assume no training variance).
    """
    _check_levels(alpha)
    if np.isnan(between_var) or np.isnan(within_var):
        return np.nan
    standard_error, df = _nested_standard_error_and_df(between_var, within_var, replicates, units_per_replicate)
    return _t_test_power(effect, standard_error, df, alpha)


def nested_minimum_detectable_difference(
    between_var: float, within_var: float, replicates: int, units_per_replicate: int,
    power: float = POWER_GOAL, alpha: float = SIGNIFICANCE,
) -> float:
    """The smallest |difference| that `nested_power` detects with probability `power` (its df rule applies).

    NaN for unknown variances or a design of one value (no test), 0 when nothing varies.
    """
    _check_levels(alpha, power)
    if np.isnan(between_var) or np.isnan(within_var):
        return np.nan
    standard_error, df = _nested_standard_error_and_df(between_var, within_var, replicates, units_per_replicate)
    if df < 1:
        return np.nan
    return float(standard_error * _noncentrality_for_power(df, power, alpha))


def planning_table(
    between_var: float, within_var: float, effect: float,
    replicates: Sequence[int] = (1, 2, 3, 5), units: Sequence[int] = (3, 5, 10, 20),
    power: float = POWER_GOAL, alpha: float = SIGNIFICANCE,
) -> pd.DataFrame:
    """Power and minimum detectable difference of every design replicates × units, to choose the next run.

    Columns: replicates, seeds (units per replicate), power (at `effect`), minimum_detectable, detects (power ≥
    the goal), assumes_no_training_variance. A NaN between variance (one replicate observed, so training variance
    was never seen) is taken as 0 and the last column set: the table is then a lower bound on what is needed, and
    a report should say so. With training variance the one-replicate rows are optimistic (see `nested_power`: no
    test on one replicate can see it) and can look better than two replicates, whose test has only 1 df.
    """
    assumes_none = bool(np.isnan(between_var))
    between = 0.0 if assumes_none else between_var
    rows = []
    for replicate_count in replicates:
        for unit_count in units:
            design_power = nested_power(effect, between, within_var, replicate_count, unit_count, alpha)
            rows.append({
                "replicates": int(replicate_count), "seeds": int(unit_count), "power": design_power,
                "minimum_detectable": nested_minimum_detectable_difference(
                    between, within_var, replicate_count, unit_count, power, alpha),
                "detects": bool(design_power >= power), "assumes_no_training_variance": assumes_none,
            })
    return pd.DataFrame(rows)


def _defined_p_values(p_values) -> tuple[np.ndarray, np.ndarray]:
    """The p-values as a float array and the mask of those that are defined; checks they lie in [0, 1]."""
    p_values = np.asarray(p_values, dtype=float)
    defined = ~np.isnan(p_values)
    if np.any((p_values[defined] < 0) | (p_values[defined] > 1)):
        raise ValueError("p-values must lie between 0 and 1")
    return p_values, defined


def holm_adjusted(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: reject where adjusted < alpha and the family-wise error rate is ≤ alpha.

    Why Holm: it controls the chance of any false claim in a report, under any dependence between the tests
    (comparisons sharing a baseline are dependent), and rejects everything Bonferroni does and more.
    The k-th smallest of m p-values is multiplied by m − k + 1, made non-decreasing in that order and capped at
    1. NaN entries (comparisons that could not be tested) stay NaN and are not counted in m. Shape is kept.
    """
    p_values, defined = _defined_p_values(p_values)
    adjusted = np.full(p_values.shape, np.nan)
    tested = p_values[defined]
    order = np.argsort(tested, kind="stable")
    scaled = (tested.size - np.arange(tested.size)) * tested[order]
    in_order = np.minimum(1.0, np.maximum.accumulate(scaled)) if tested.size else scaled
    values = np.empty(tested.size)
    values[order] = in_order
    adjusted[defined] = values
    return adjusted


def fdr_adjusted(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values: rejecting where adjusted < q keeps the false discovery rate ≤ q.

    For screening many comparisons where a few false leads are acceptable: more power than Holm, but it bounds
    only the expected share of false claims (for independent or positively dependent tests). NaN entries stay
    NaN and are not counted in the family size. Shape is kept.
    """
    p_values, defined = _defined_p_values(p_values)
    adjusted = np.full(p_values.shape, np.nan)
    if defined.any():
        adjusted[defined] = stats.false_discovery_control(p_values[defined], method="bh")
    return adjusted


MULTIPLICITY_METHODS: dict[str, Callable[..., np.ndarray]] = {"holm": holm_adjusted, "fdr_bh": fdr_adjusted}
"""Adjusted p-values by method name: "holm" controls the family-wise error rate, "fdr_bh" the false discovery
rate."""


class ReplicateInterval(NamedTuple):
    """A score over training replicates: the estimate, its interval, and the two sources of its variance.

    `between_sd`: standard deviation of one replicate's score across training runs beyond its units' noise
    (NaN with one replicate); `within_sd`: standard deviation of one replicate's score from its units alone (its
    images or seeds), root mean square over replicates. Both are in the score's units, so a planned design with
    the same units per replicate has `nested_power(effect, between_sd**2, within_sd**2, replicates, 1)`.
    """

    estimate: float
    lower: float
    upper: float
    between_sd: float
    within_sd: float

    @property
    def covers_training_variance(self) -> bool:
        """False when the interval was computed from one replicate and covers the units' noise only."""
        return not np.isnan(self.between_sd)


def _resampled_statistics(
    statistic: Callable[..., float], values: np.ndarray, resamples: int, generator: np.random.Generator,
) -> np.ndarray:
    """`statistic` of `resamples` resamples of `values` with replacement.

    A numpy reduction that takes `axis` (np.mean, np.median) is applied to many resamples at once, in chunks of
    about two million values; another callable is applied to one resample at a time.
    """
    chunk = max(1, 2_000_000 // values.size)
    results = []
    for start in range(0, resamples, chunk):
        drawn = values[generator.integers(0, values.size, (min(chunk, resamples - start), values.size))]
        try:
            result = np.asarray(statistic(drawn, axis=-1), dtype=float)
        except TypeError:
            result = np.array([statistic(row) for row in drawn], dtype=float)
        if result.shape != (len(drawn),):
            result = np.array([statistic(row) for row in drawn], dtype=float)
        results.append(result)
    return np.concatenate(results)


def _within_variances(
    groups: list[np.ndarray], statistic: Callable[..., float], resamples: int, seed: int,
) -> np.ndarray:
    """Variance of each replicate's statistic from resampling its units, with the n/(n − 1) factor that makes
    it the usual unbiased variance of a mean (a resample of n values has only the 1/n plug-in variance)."""
    generator = np.random.default_rng(seed)
    return np.array([
        _resampled_statistics(statistic, group, resamples, generator).var(ddof=1) * group.size / (group.size - 1)
        for group in groups
    ])


def _checked_groups(groups) -> list[np.ndarray]:
    """The per-replicate arrays as floats; each needs two units, else its own noise cannot be estimated."""
    groups = [np.asarray(group, dtype=float).ravel() for group in groups]
    if not groups:
        raise ValueError("a score over replicates needs at least one replicate")
    if min(group.size for group in groups) < 2:
        raise ValueError("every replicate needs at least two units; for one score per replicate use seed_interval")
    return groups


def _pooled_within_interval(
    groups: list[np.ndarray], statistic: Callable[..., float], within_variances: np.ndarray, confidence: float,
) -> tuple[float, float, float]:
    """`within_replicate_interval` from each replicate's within variance."""
    estimate = float(np.mean([statistic(group) for group in groups]))
    standard_error = np.sqrt(within_variances.sum()) / len(groups)
    df = sum(group.size - 1 for group in groups)
    half_width = float(stats.t.ppf((1 + confidence) / 2, df) * standard_error)
    return estimate, estimate - half_width, estimate + half_width


def within_replicate_interval(
    groups, statistic: Callable[..., float] = np.mean, resamples: int = 2000, seed: int = 0,
    confidence: float = INTERVAL_CONFIDENCE,
) -> tuple[float, float, float]:
    """(estimate, lower, upper) covering only the units' noise (images, seeds), the replicates held fixed.

    The estimate is the mean over replicates of each replicate's statistic; its standard error comes from
    resampling units within each replicate, and the interval uses Student's t with the pooled within df
    (Σ(n_r − 1)), which for a mean of one replicate is `seed_interval` of its units up to resampling noise. It
    answers "how much would other images have changed this score" and misses what retraining would change: with
    training variance it under-covers the score of the method (see `replicate_interval`).
    """
    groups = _checked_groups(groups)
    return _pooled_within_interval(groups, statistic, _within_variances(groups, statistic, resamples, seed), confidence)


def replicate_interval(
    groups, statistic: Callable[..., float] = np.mean, resamples: int = 2000, seed: int = 0,
    confidence: float = INTERVAL_CONFIDENCE,
) -> ReplicateInterval:
    """The mean over training replicates of a per-replicate score, with an interval that covers training variance.

    `groups` holds one array per training replicate: its per-unit values (images or classifier seeds);
    `statistic` turns one replicate's values into its score. The interval is `seed_interval` of the R replicate
    scores: Student's t with R − 1 df. Each replicate's score already carries both its training draw and its
    units' noise, so the spread of the R scores estimates exactly the variance of their mean.
    Why not a two-level bootstrap (replicates, then units within them): its percentile interval under-covers with
    few replicates (about 77 % at R = 3, like a percentile bootstrap of 3 seeds), and its variance counts the
    units' noise twice (once inside each replicate's score, again by resampling units), so even studentised with
    R − 1 df it covers 98-100 % whenever unit noise is comparable to training variance. In simulation (normal
    data, R = 3, 5, 10) the t interval over replicate scores stays at 94-95 % whatever the ratio.
    Resampling units within each replicate is still used, for `within_sd` and hence `between_sd` (the replicate
    scores' variance minus the units' share, clipped at 0). With ONE replicate there is no training variance to
    see: the interval falls back to `within_replicate_interval` (images/seeds only), `between_sd` is NaN and
    `covers_training_variance` is False, so that a report can say the interval covers the units only.
    """
    groups = _checked_groups(groups)
    within_variances = _within_variances(groups, statistic, resamples, seed)
    within_sd = float(np.sqrt(within_variances.mean()))
    if len(groups) == 1:
        estimate, lower, upper = _pooled_within_interval(groups, statistic, within_variances, confidence)
        return ReplicateInterval(estimate, lower, upper, np.nan, within_sd)
    scores = np.array([statistic(group) for group in groups], dtype=float)
    estimate, lower, upper = seed_interval(scores, confidence)
    between_sd = float(np.sqrt(max(0.0, scores.var(ddof=1) - within_variances.mean())))
    return ReplicateInterval(estimate, lower, upper, between_sd, within_sd)
