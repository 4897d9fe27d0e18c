"""Evidence by design: what a run could have detected, what it would need, and intervals that cover training.

`statistics` says how uncertain one run's numbers are. This module says what such a run could have found at all:
the smallest difference a paired t-test over seeds detects with a given power (`minimum_detectable_difference`);
the test, variance components and power of a crossed design of training replicates × classifier seeds, where
every replicate is evaluated with the same seeds (`crossed_mean_test`, `crossed_components`, `crossed_power`,
`planning_table`); how to keep the error rate of a report with many comparisons (`MULTIPLICITY_METHODS`); and an
interval for a score measured on several training replicates that covers the training variance
(`replicate_interval`). Power is computed from the test's own sampling distribution (the noncentral t for a
one-way test), not from a normal approximation, because with 3 to 5 seeds the two differ a lot (at 3 seeds the
t-test needs roughly twice the difference the normal approximation claims).
"""
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

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


def _crossed_table(table) -> np.ndarray:
    """The replicate × seed table as a 2-d float array, at least 2 × 2 and complete."""
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 2:
        raise ValueError(f"a crossed design needs an R × S table with at least 2 replicates (rows) and 2 seeds "
                         f"(columns), got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("a crossed design needs a value in every replicate × seed cell (no NaN or infinity)")
    return table


def _mean_squares(table: np.ndarray) -> tuple[float, float, float]:
    """(replicate, seed, residual) mean squares of the two-way layout with one value per cell."""
    replicates, seeds = table.shape
    grand_mean = table.mean()
    replicate_means, seed_means = table.mean(axis=1), table.mean(axis=0)
    residuals = table - replicate_means[:, None] - seed_means[None, :] + grand_mean
    return (
        float(seeds * ((replicate_means - grand_mean) ** 2).sum() / (replicates - 1)),
        float(replicates * ((seed_means - grand_mean) ** 2).sum() / (seeds - 1)),
        float((residuals ** 2).sum() / ((replicates - 1) * (seeds - 1))),
    )


def _crossed_variance_and_df(replicate_ms, seed_ms, residual_ms, replicates: int, seeds: int):
    """R·S × the estimated variance of the grand mean, and its Satterthwaite degrees of freedom.

    Works elementwise on arrays of mean squares. The variance is σa²/R + σb²/S + σe²/(R·S) with the components
    clipped at 0 as in `crossed_components`, so R·S times it is MS_r + MS_s − MS_e when both effects are
    visible (each mean square above the residual one), MS_r alone when no seed effect is visible (the t-test over
    replicate means), MS_s alone when no replicate effect is, and MS_e when neither is. The degrees of freedom
    are Satterthwaite's over the mean squares that enter, each with its own df (R − 1, S − 1, (R − 1)(S − 1)).
    """
    replicate_df, seed_df, residual_df = replicates - 1, seeds - 1, (replicates - 1) * (seeds - 1)
    with_replicates, with_seeds = replicate_ms > residual_ms, seed_ms > residual_ms
    scaled = (np.where(with_replicates, replicate_ms, residual_ms) + np.where(with_seeds, seed_ms, residual_ms)
              - residual_ms)
    # MS_e cancels when exactly one component is clipped; it enters when both or neither are
    spread = (np.where(with_replicates, replicate_ms ** 2 / replicate_df, 0.0)
              + np.where(with_seeds, seed_ms ** 2 / seed_df, 0.0)
              + np.where(with_replicates == with_seeds, residual_ms ** 2 / residual_df, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return scaled, scaled ** 2 / spread


def crossed_components(table) -> tuple[float, float, float]:
    """(replicate variance, seed variance, residual variance) of a crossed replicate × seed design.

    `table[r, s]` is one value per training replicate r (rows) and classifier seed s (columns), e.g. the AUC
    difference of real + method replicate r against real only, both trained with seed s. The same seeds serve
    every replicate, so the design is crossed: table[r, s] = μ + a_r + b_s + e_rs, with a replicate (training)
    effect of variance σa², a seed effect σb² shared by every replicate (the real-only run of seed s enters
    every difference of that seed), and a residual σe². Method of moments on the two-way mean squares: σe² =
    MS_e, σa² = (MS_r − MS_e)/S, σb² = (MS_s − MS_e)/R, each clipped at 0 (a negative estimate means no visible
    effect). Needs at least 2 replicates and 2 seeds and a value in every cell; raises ValueError otherwise.
    """
    table = _crossed_table(table)
    replicates, seeds = table.shape
    replicate_ms, seed_ms, residual_ms = _mean_squares(table)
    return (max(0.0, (replicate_ms - residual_ms) / seeds), max(0.0, (seed_ms - residual_ms) / replicates),
            residual_ms)


def crossed_mean_test(table, confidence: float = INTERVAL_CONFIDENCE) -> dict:
    """The grand mean of a crossed replicate × seed table, its standard error, t interval and two-sided p-value.

    Returns {difference, standard_error, df, lower, upper, p_value}; `difference` is the mean of all cells (the
    table is usually per-seed differences, see `crossed_components` for the layout). Why not a t-test over the R
    replicate means: the seed effect b_s is common to every replicate mean, so their spread does not show it and
    the interval under-covers when the seed effect is large (in simulation, with a seed SD four times the
    replicate and residual SDs, 85-87 % at 2 replicates and 43-50 % at 5, where this test covers 94-97 %).
    The variance of the grand mean is σa²/R + σb²/S + σe²/(R·S), estimated from the components of
    `crossed_components` (clipped at 0): (MS_r + MS_s − MS_e)/(R·S) when both effects are visible (each mean
    square above MS_e), MS_r/(R·S) (the t-test over replicate means) when no seed effect is, MS_s/(R·S) (the
    t-test over seed means) when no replicate effect is, and MS_e/(R·S) when neither is. Why this fallback rather
    than the raw combination, which can be 0 or negative: the true variance is never below any of these three
    (its expectation Sσa² + Rσb² + σe², over R·S, exceeds E[MS_r], E[MS_s] and E[MS_e] over R·S), so the
    estimate never is either; it is positive whenever the cells vary, and the standard error is never below a
    one-way test's. The t interval has Satterthwaite's degrees of freedom over the mean squares that enter
    (`df`): (MS_r + MS_s − MS_e)² / (MS_r²/(R − 1) + MS_s²/(S − 1) + MS_e²/((R − 1)(S − 1))) when both effects
    are visible, else R − 1, S − 1 or (R − 1)(S − 1). With few replicates the interval is conservative: about
    97-98 % coverage at 2 replicates × 3 seeds, 94-97 % from 2 × 5 or 3 × 3 up.
    When the cells do not vary beyond rounding (4 units in the last place of the largest |cell|, the rule of
    `statistics.paired_comparison` applied to the differences), the standard error is 0, the interval is the
    value itself, `df` is NaN, and p is 1 if the value is 0 (within rounding, then reported as 0) else 0.
    Needs at least 2 replicates and 2 seeds and a value in every cell.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    table = _crossed_table(table)
    replicates, seeds = table.shape
    difference = float(table.mean())
    rounding = 4 * np.finfo(float).eps * float(np.abs(table).max())
    if np.ptp(table) <= rounding:
        difference = 0.0 if abs(difference) <= rounding else difference
        return {"difference": difference, "standard_error": 0.0, "df": np.nan, "lower": difference,
                "upper": difference, "p_value": 1.0 if difference == 0 else 0.0}
    scaled, df = _crossed_variance_and_df(*_mean_squares(table), replicates, seeds)
    standard_error = float(np.sqrt(scaled / (replicates * seeds)))
    half_width = float(stats.t.ppf((1 + confidence) / 2, df) * standard_error)
    return {
        "difference": difference, "standard_error": standard_error, "df": float(df),
        "lower": difference - half_width, "upper": difference + half_width,
        "p_value": float(2 * stats.t.sf(abs(difference) / standard_error, df)),
    }


_POWER_DRAWS = 1 << 15
"""Draws of the mean squares over which `crossed_power` averages the test's rejection probability."""
_CRITICAL_QUANTILES = 2048


def _crossed_design(
    replicate_var: float, seed_var: float, residual_var: float, replicates: int, seeds: int,
) -> float:
    """Check a planned crossed design and return the standard error of its grand mean."""
    if replicates < 1 or seeds < 1:
        raise ValueError(f"a design needs a replicate and a seed at least, got {replicates} × {seeds}")
    if min(replicate_var, seed_var, residual_var) < 0:
        raise ValueError(
            f"variance components cannot be negative, got {replicate_var}, {seed_var}, {residual_var}")
    return float(np.sqrt(replicate_var / replicates + seed_var / seeds + residual_var / (replicates * seeds)))


def _one_way_df(replicates: int, seeds: int) -> int:
    """The degrees of freedom of the t-test a design with one replicate or one seed allows (over the other)."""
    return seeds - 1 if replicates == 1 else replicates - 1


@lru_cache(maxsize=64)
def _crossed_critical_means(
    replicate_var: float, seed_var: float, residual_var: float, replicates: int, seeds: int, alpha: float,
) -> np.ndarray:
    """The |grand mean| above which `crossed_mean_test` rejects at level alpha, for draws of its mean squares.

    In the balanced normal model the three mean squares are independent scaled chi-squares, E[MS]/df · χ²(df)
    with E[MS_r] = Sσa² + σe², E[MS_s] = Rσb² + σe², E[MS_e] = σe², and independent of the grand mean; the
    test rejects when |mean| exceeds t(df̂)·√(variancê), both computed from them. Fixed draws (seed 0) keep
    every call deterministic and the power smooth in the effect. Only the distribution of the critical mean
    matters, so it is kept as `_CRITICAL_QUANTILES` midpoint quantiles of the draws, which makes each power
    evaluation (many, when solving for a detectable difference) cheap.
    """
    generator = np.random.default_rng(0)
    degrees = (replicates - 1, seeds - 1, (replicates - 1) * (seeds - 1))
    expected = (seeds * replicate_var + residual_var, replicates * seed_var + residual_var, residual_var)
    mean_squares = [mean_square * generator.chisquare(df, _POWER_DRAWS) / df
                    for mean_square, df in zip(expected, degrees)]
    scaled, df = _crossed_variance_and_df(*mean_squares, replicates, seeds)
    critical_means = special.stdtrit(df, 1 - alpha / 2) * np.sqrt(scaled / (replicates * seeds))
    return np.quantile(critical_means, (np.arange(_CRITICAL_QUANTILES) + 0.5) / _CRITICAL_QUANTILES)


def _crossed_rejection_rate(effect: float, standard_error: float, critical_means: np.ndarray) -> float:
    """Chance that |N(effect, standard_error²)| exceeds the critical mean, averaged over its quantiles."""
    return float(np.mean(special.ndtr((effect - critical_means) / standard_error)
                         + special.ndtr((-effect - critical_means) / standard_error)))


def crossed_power(
    effect: float, replicate_var: float, seed_var: float, residual_var: float, replicates: int, seeds: int,
    alpha: float = SIGNIFICANCE,
) -> float:
    """Power of `crossed_mean_test` at a true mean `effect` in a planned design of R replicates × S seeds.

    The variances are the components of `crossed_components`: the grand mean has standard error
    √(σa²/R + σb²/S + σe²/(R·S)), so more seeds shrink only the seed and residual terms and more replicates only
    the replicate and residual terms. With R, S ≥ 2 the value is the test's rejection rate computed from its
    exact sampling distribution (normal grand mean, independent chi-square mean squares, the test's own
    variance and Satterthwaite df per draw), averaged over 32768 fixed draws (deterministic; Monte Carlo error
    about 0.002). Why not the noncentral t with the Satterthwaite df of the expected mean squares: with 2 or 3
    replicates the test's df is itself estimated, and that approximation misses its rejection rate by up to
    0.15 in either direction (2 × 3 designs claim power the test does not have). Being the test's own rate, the
    value at effect 0 is its actual size, below alpha where the test is conservative.
    With one replicate (R = 1) or one seed (S = 1) the only test is the one-way t-test over the other factor,
    with S − 1 (or R − 1) df; it cannot see the variance of the factor with one level (training variance for
    R = 1, the shared seed effect for S = 1), so the value is the noncentral-t power of a test that knew it, an
    optimistic bound when that variance is not 0. NaN for an unknown effect or variance or a 1 × 1 design; with
    no variance at all, 1 for a nonzero effect and alpha without one.
    """
    _check_levels(alpha)
    if np.isnan([effect, replicate_var, seed_var, residual_var]).any():
        return np.nan
    standard_error = _crossed_design(replicate_var, seed_var, residual_var, replicates, seeds)
    if replicates == 1 or seeds == 1:
        return _t_test_power(effect, standard_error, _one_way_df(replicates, seeds), alpha)
    if standard_error == 0:
        return _t_test_power(effect, standard_error, (replicates - 1) * (seeds - 1), alpha)
    critical_means = _crossed_critical_means(replicate_var, seed_var, residual_var, replicates, seeds, alpha)
    return _crossed_rejection_rate(effect, standard_error, critical_means)


def crossed_minimum_detectable_difference(
    replicate_var: float, seed_var: float, residual_var: float, replicates: int, seeds: int,
    power: float = POWER_GOAL, alpha: float = SIGNIFICANCE,
) -> float:
    """The smallest |mean difference| that `crossed_power` detects with probability `power` (its rules apply).

    NaN for an unknown variance or a 1 × 1 design (no test), 0 when nothing varies.
    """
    _check_levels(alpha, power)
    if np.isnan([replicate_var, seed_var, residual_var]).any():
        return np.nan
    standard_error = _crossed_design(replicate_var, seed_var, residual_var, replicates, seeds)
    if replicates == 1 or seeds == 1:
        df = _one_way_df(replicates, seeds)
        return np.nan if df < 1 else float(standard_error * _noncentrality_for_power(df, power, alpha))
    if standard_error == 0:
        return 0.0
    critical_means = _crossed_critical_means(replicate_var, seed_var, residual_var, replicates, seeds, alpha)

    def shortfall(effect: float) -> float:
        return _crossed_rejection_rate(effect, standard_error, critical_means) - power

    upper = standard_error
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-9 * upper))


def planning_table(
    replicate_var: float, seed_var: float, residual_var: float, effect: float,
    replicates: Sequence[int] = (1, 2, 3, 5), units: Sequence[int] = (3, 5, 10, 20),
    power: float = POWER_GOAL, alpha: float = SIGNIFICANCE,
) -> pd.DataFrame:
    """Power and minimum detectable difference of every crossed design replicates × seeds, to choose the next run.

    The variances are those of `crossed_components` (replicate, shared seed, residual); every row is
    `crossed_power` and `crossed_minimum_detectable_difference` of one design. Columns: replicates, seeds,
    power (at `effect`), minimum_detectable, detects (power ≥ the goal), assumes_no_training_variance.
    A NaN replicate variance (one replicate observed, so training variance was never seen) is taken as 0 and the
    last column set: the table is then a lower bound on what is needed, and a report should say so.
    With ONE observed replicate the seed and residual variances cannot be separated either (both vary with the
    seed only): pass the variance of the per-seed differences as `seed_var` and 0 as `residual_var`. That is
    conservative, since more replicates then do not reduce it, while the residual share of it truly would
    shrink as σe²/(R·S). With training variance the one-replicate rows are optimistic (see `crossed_power`)
    and can look better than two replicates, whose test has about 1 replicate df.
    """
    assumes_none = bool(np.isnan(replicate_var))
    replicate = 0.0 if assumes_none else replicate_var
    rows = []
    for replicate_count in replicates:
        for seed_count in units:
            design = (replicate, seed_var, residual_var, int(replicate_count), int(seed_count))
            design_power = crossed_power(effect, *design, alpha=alpha)
            rows.append({
                "replicates": int(replicate_count), "seeds": int(seed_count), "power": design_power,
                "minimum_detectable": crossed_minimum_detectable_difference(*design, power=power, alpha=alpha),
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
    images or seeds), root mean square over replicates. Both are in the score's units: one replicate's score
    varies by between_sd² + within_sd², so a planned design with the same units per replicate, one score each,
    has power `crossed_power(effect, between_sd**2 + within_sd**2, 0.0, 0.0, replicates, 1)`.
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
