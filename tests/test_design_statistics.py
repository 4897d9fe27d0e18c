"""Evidence by design: power, minimum detectable differences, multiplicity and intervals over training replicates,
checked against simulated experiments where the truth is known.

Every simulation is seeded, so the checks are deterministic; each accepted range is about three binomial standard
errors (or more) wide around the rate the theory predicts.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from migros.evaluation.design import (
    MULTIPLICITY_METHODS, crossed_components, crossed_mean_test, crossed_minimum_detectable_difference,
    crossed_power, fdr_adjusted, holm_adjusted, minimum_detectable_difference, paired_t_power, planning_table,
    replicate_interval, within_replicate_interval,
)
from migros.evaluation.statistics import paired_comparison, seed_interval


def t_test_rejects(differences: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Whether the two-sided one-sample t-test of each row's mean rejects 0 (vectorised `paired_comparison`)."""
    return stats.ttest_1samp(differences, 0.0, axis=-1).pvalue < alpha


@pytest.mark.parametrize("n", [3, 5, 10])
def test_minimum_detectable_difference_is_detected_at_the_stated_power_in_simulation(n):
    generator = np.random.default_rng(n)
    sd, experiments = 2.0, 20_000
    difference = minimum_detectable_difference(sd, n)
    assert t_test_rejects(generator.normal(difference, sd, (experiments, n))).mean() == pytest.approx(0.8, abs=0.015)
    smaller = difference / 2
    simulated = t_test_rejects(generator.normal(smaller, sd, (experiments, n))).mean()
    assert simulated == pytest.approx(paired_t_power(smaller, sd, n), abs=0.015)
    assert paired_t_power(-smaller, sd, n) == pytest.approx(paired_t_power(smaller, sd, n))
    assert paired_t_power(0.0, sd, n) == pytest.approx(0.05)


def test_minimum_detectable_difference_shrinks_with_seeds_and_is_far_above_the_normal_approximation_at_few():
    differences = [minimum_detectable_difference(1.0, n) for n in (2, 3, 5, 10, 30)]
    assert differences == sorted(differences, reverse=True)
    normal_approximation = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / np.sqrt(3)
    assert differences[1] > 1.9 * normal_approximation
    assert minimum_detectable_difference(1.0, 5, power=0.9) > differences[2]
    assert minimum_detectable_difference(1.0, 5, alpha=0.01) > differences[2]
    assert paired_t_power(differences[2], 1.0, 5) == pytest.approx(0.8, abs=1e-9)


def test_power_and_detectable_difference_of_degenerate_designs():
    assert np.isnan(paired_t_power(1.0, 1.0, 1)) and np.isnan(paired_t_power(1.0, np.nan, 5))
    assert paired_t_power(0.3, 0.0, 5) == 1.0 and paired_t_power(0.0, 0.0, 5) == 0.05
    assert np.isnan(minimum_detectable_difference(1.0, 1)) and np.isnan(minimum_detectable_difference(np.nan, 5))
    assert minimum_detectable_difference(0.0, 5) == 0.0
    with pytest.raises(ValueError, match="power goal"):
        minimum_detectable_difference(1.0, 5, power=0.04)
    with pytest.raises(ValueError, match="alpha"):
        paired_t_power(1.0, 1.0, 5, alpha=1.5)


def test_a_simulated_report_of_many_comparisons_keeps_its_error_rates_and_finds_planted_differences():
    """Reports of 12 paired comparisons over 5 seeds; 4 have a planted difference of twice the MDE, 8 are null."""
    generator = np.random.default_rng(12)
    reports, comparisons, planted, seeds = 4000, 12, 4, 5
    effect = 2 * minimum_detectable_difference(1.0, seeds)
    truth = np.where(np.arange(comparisons) < planted, effect, 0.0)
    differences = generator.normal(truth[:, None], 1.0, (reports, comparisons, seeds))
    p_values = stats.ttest_1samp(differences, 0.0, axis=-1).pvalue
    for row in range(3):  # the vectorised test is the pipeline's paired comparison
        expected = [paired_comparison(values, np.zeros(seeds))["p_value"] for values in differences[row]]
        np.testing.assert_allclose(p_values[row], expected, rtol=1e-9)
    holm = np.array([holm_adjusted(row) for row in p_values])
    benjamini_hochberg = np.array([fdr_adjusted(row) for row in p_values])

    unadjusted_power = paired_t_power(effect, 1.0, seeds)
    assert (p_values[:, :planted] < 0.05).mean() == pytest.approx(unadjusted_power, abs=0.015)
    # Holm rejects at least what Bonferroni (alpha / 12) rejects and at most what the unadjusted test does
    found_after_holm = (holm[:, :planted] < 0.05).mean()
    assert paired_t_power(effect, 1.0, seeds, alpha=0.05 / comparisons) - 0.015 <= found_after_holm
    assert found_after_holm <= unadjusted_power + 0.015

    assert (holm[:, planted:] < 0.05).any(axis=1).mean() <= 0.05 + 0.01
    assert (p_values[:, planted:] < 0.05).any(axis=1).mean() > 0.25  # 1 − 0.95⁸ ≈ 0.34 unadjusted
    discoveries = benjamini_hochberg < 0.05
    false_share = discoveries[:, planted:].sum(axis=1) / np.maximum(discoveries.sum(axis=1), 1)
    assert false_share.mean() <= 0.05 + 0.01

    flat_differences, flat_truth = differences.reshape(-1, seeds)[:4000], np.tile(truth, reports)[:4000]
    covered = [lower <= true <= upper for (_, lower, upper), true in
               zip(map(seed_interval, flat_differences), flat_truth)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.015)


def simulate_replicates(generator, replicates, units, between_sd, within_sd, true_mean=0.0):
    """Per-replicate unit values: each training replicate shifts all its units by one draw of the training noise."""
    shifts = generator.normal(0.0, between_sd, (replicates, 1))
    return list(true_mean + shifts + generator.normal(0.0, within_sd, (replicates, units)))


@pytest.mark.parametrize("replicates", [3, 5, 10])
def test_replicate_interval_covers_training_variance_where_an_images_only_interval_does_not(replicates):
    """Training SD 1, unit SD 1 over 20 units: the units' standard error (0.22) is far below the training SD."""
    generator = np.random.default_rng(replicates)
    simulations, true_mean = 1500, 0.7
    covered = covered_by_images_only = 0
    for simulation in range(simulations):
        groups = simulate_replicates(generator, replicates, 20, 1.0, 1.0, true_mean)
        interval = replicate_interval(groups, resamples=100, seed=simulation)
        covered += interval.lower <= true_mean <= interval.upper
        _, lower, upper = within_replicate_interval(groups, resamples=100, seed=simulation)
        covered_by_images_only += lower <= true_mean <= upper
    assert 0.93 <= covered / simulations <= 0.97
    assert covered_by_images_only / simulations < 0.7


def test_replicate_interval_is_not_conservative_when_units_dominate():
    """No training variance at all: the interval still covers at about 95 %, not the 100 % of a two-level
    bootstrap standard error that counts the units' noise twice."""
    generator = np.random.default_rng(30)
    simulations = 1500
    covered = 0
    for simulation in range(simulations):
        interval = replicate_interval(simulate_replicates(generator, 3, 20, 0.0, 1.0), resamples=100, seed=simulation)
        covered += interval.lower <= 0.0 <= interval.upper
    assert 0.93 <= covered / simulations <= 0.97


def test_replicate_interval_splits_training_and_unit_variance_on_a_large_design():
    generator = np.random.default_rng(4)
    interval = replicate_interval(simulate_replicates(generator, 400, 20, 1.0, 1.0), resamples=400)
    assert interval.covers_training_variance
    assert interval.between_sd == pytest.approx(1.0, abs=0.1)
    assert interval.within_sd == pytest.approx(1.0 / np.sqrt(20), rel=0.03)
    assert interval.lower < interval.estimate < interval.upper


def test_one_replicate_falls_back_to_an_interval_over_its_units_and_says_so():
    generator = np.random.default_rng(1)
    simulations, units = 1000, 10
    covered = 0
    for simulation in range(simulations):
        replicate_mean = generator.normal(0.0, 1.0)  # the training draw: unknowable from one replicate
        values = replicate_mean + generator.normal(0.0, 1.0, units)
        interval = replicate_interval([values], resamples=400, seed=simulation)
        covered += interval.lower <= replicate_mean <= interval.upper
    assert 0.93 <= covered / simulations <= 0.97
    assert not interval.covers_training_variance and np.isnan(interval.between_sd)
    estimate, lower, upper = seed_interval(values)
    assert interval.estimate == estimate
    assert interval.upper - interval.lower == pytest.approx(upper - lower, rel=0.1)
    assert interval.within_sd == pytest.approx(values.std(ddof=1) / np.sqrt(units), rel=0.1)


def test_replicate_interval_takes_any_statistic_and_repeats_with_its_seed():
    groups = simulate_replicates(np.random.default_rng(2), 4, 15, 0.5, 1.0)
    vectorised = replicate_interval(groups, np.median, resamples=300, seed=3)
    one_at_a_time = replicate_interval(groups, lambda values: float(np.median(values)), resamples=300, seed=3)
    assert vectorised == one_at_a_time
    assert vectorised.estimate == pytest.approx(np.mean([np.median(group) for group in groups]))
    with pytest.raises(ValueError, match="at least two units"):
        replicate_interval([np.array([1.0, 2.0]), np.array([3.0])])


def simulate_crossed(generator, experiments, replicates, seeds, replicate_sd, seed_sd, residual_sd, true_mean=0.0):
    """Replicate × seed tables: every replicate meets the same seeds, so the seed effect is shared by all rows."""
    return (true_mean + generator.normal(0.0, replicate_sd, (experiments, replicates, 1))
            + generator.normal(0.0, seed_sd, (experiments, 1, seeds))
            + generator.normal(0.0, residual_sd, (experiments, replicates, seeds)))


def crossed_tests(tables: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grand mean, half-width of its 1 − alpha interval, whether it rejects 0) of each table: a vectorised
    `crossed_mean_test`, checked against it on the first tables of every simulation."""
    replicates, seeds = tables.shape[-2:]
    grand = tables.mean(axis=(-2, -1))
    replicate_means, seed_means = tables.mean(axis=-1), tables.mean(axis=-2)
    replicate_ms = seeds * ((replicate_means - grand[:, None]) ** 2).sum(-1) / (replicates - 1)
    seed_ms = replicates * ((seed_means - grand[:, None]) ** 2).sum(-1) / (seeds - 1)
    residuals = tables - replicate_means[:, :, None] - seed_means[:, None, :] + grand[:, None, None]
    residual_df = (replicates - 1) * (seeds - 1)
    residual_ms = (residuals ** 2).sum((-2, -1)) / residual_df
    with_replicates, with_seeds = replicate_ms > residual_ms, seed_ms > residual_ms
    scaled = np.where(with_replicates, replicate_ms, residual_ms) + np.where(with_seeds, seed_ms, residual_ms) \
        - residual_ms
    spread = (np.where(with_replicates, replicate_ms ** 2 / (replicates - 1), 0.0)
              + np.where(with_seeds, seed_ms ** 2 / (seeds - 1), 0.0)
              + np.where(with_replicates == with_seeds, residual_ms ** 2 / residual_df, 0.0))
    half_width = stats.t.ppf(1 - alpha / 2, scaled ** 2 / spread) * np.sqrt(scaled / (replicates * seeds))
    for table, mean, half in list(zip(tables, grand, half_width))[:20]:
        result = crossed_mean_test(table, 1 - alpha)
        assert result["difference"] == pytest.approx(mean)
        assert (result["lower"], result["upper"]) == pytest.approx((mean - half, mean + half), rel=1e-9)
        assert (result["p_value"] < alpha) == (np.abs(mean) > half)
    return grand, half_width, np.abs(grand) > half_width


@pytest.mark.parametrize(("replicates", "seeds"), [(2, 3), (2, 5), (3, 3), (3, 5), (5, 3), (5, 5)])
def test_crossed_mean_test_covers_where_a_t_test_over_replicate_means_does_not(replicates, seeds):
    """Replicate SD 0.5, a shared seed SD of 2, residual SD 0.5: the replicate means all carry the same seed
    draws, so their spread misses the seed effect and their t interval under-covers badly."""
    generator = np.random.default_rng(10 * replicates + seeds)
    simulations, true_mean = 4000, 0.3
    tables = simulate_crossed(generator, simulations, replicates, seeds, 0.5, 2.0, 0.5, true_mean)
    mean, half_width, _ = crossed_tests(tables)
    covered = (np.abs(mean - true_mean) <= half_width).mean()
    replicate_means = tables.mean(axis=-1)
    covered_by_replicate_means = np.mean([
        lower <= true_mean <= upper for _, lower, upper in map(seed_interval, replicate_means)])
    if (replicates, seeds) == (2, 3):  # one replicate df and two seed df: Satterthwaite's t is conservative
        assert 0.95 <= covered <= 0.99
    else:
        assert 0.93 <= covered <= 0.97
    assert covered_by_replicate_means < min(0.9, covered - 0.05)


def test_crossed_components_by_hand_and_on_a_large_simulated_table():
    table = np.array([[1.0, 2.0, 3.0], [2.0, 5.0, 4.0]])
    # MS_r = 3·2·(5/6)² = 25/6, MS_s = 2·(16/9 + 2·4/9)/2 = 8/3, MS_e = (4/3)/2 = 2/3
    assert crossed_components(table) == pytest.approx(((25 / 6 - 2 / 3) / 3, (8 / 3 - 2 / 3) / 2, 2 / 3))
    assert crossed_components([[0.0, 1.0], [1.0, 0.0]]) == pytest.approx((0.0, 0.0, 1.0))  # both clipped at 0

    generator = np.random.default_rng(5)
    table = simulate_crossed(generator, 1, 400, 400, 1.0, 1.5, 0.5)[0]
    replicate_var, seed_var, residual_var = crossed_components(table)
    assert replicate_var == pytest.approx(1.0, abs=0.2)
    assert seed_var == pytest.approx(2.25, abs=0.45)
    assert residual_var == pytest.approx(0.25, rel=0.02)

    for shape in [(1, 5), (5, 1), (5,), (2, 2, 2)]:
        with pytest.raises(ValueError, match="at least 2 replicates"):
            crossed_components(np.zeros(shape))
    with pytest.raises(ValueError, match="every replicate × seed cell"):
        crossed_mean_test([[1.0, np.nan], [2.0, 3.0]])


def test_crossed_mean_test_by_hand_and_its_one_way_limits():
    table = np.array([[1.0, 2.0, 3.0], [2.0, 5.0, 4.0]])
    result = crossed_mean_test(table)
    replicate_ms, seed_ms, residual_ms = 25 / 6, 8 / 3, 2 / 3
    combined = replicate_ms + seed_ms - residual_ms
    df = combined ** 2 / (replicate_ms ** 2 / 1 + seed_ms ** 2 / 2 + residual_ms ** 2 / 2)
    assert result["difference"] == pytest.approx(17 / 6)
    assert result["standard_error"] == pytest.approx(np.sqrt(combined / 6)) and result["df"] == pytest.approx(df)
    half_width = stats.t.ppf(0.975, df) * np.sqrt(combined / 6)
    assert (result["lower"], result["upper"]) == pytest.approx((17 / 6 - half_width, 17 / 6 + half_width))
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(17 / 6 / np.sqrt(combined / 6), df))
    assert crossed_mean_test(table, confidence=0.8)["upper"] < result["upper"]

    # no seed effect visible (every seed mean equal): the t-test over replicate means, R − 1 df
    no_seed_effect = np.array([[0.0, 1.0, 0.0, 1.0], [5.0, 4.0, 5.0, 4.0]])
    result = crossed_mean_test(no_seed_effect)
    assert (result["difference"], result["lower"], result["upper"]) == pytest.approx(
        seed_interval(no_seed_effect.mean(axis=1))) and result["df"] == pytest.approx(1)
    # no replicate effect visible: the t-test over seed means, S − 1 df
    result = crossed_mean_test(no_seed_effect.T)
    assert (result["difference"], result["lower"], result["upper"]) == pytest.approx(
        seed_interval(no_seed_effect.T.mean(axis=0))) and result["df"] == pytest.approx(1)
    # neither visible: the residual mean square alone, with (R − 1)(S − 1) df, never a zero standard error
    result = crossed_mean_test([[0.0, 1.0], [1.0, 0.0]])
    assert result["standard_error"] == pytest.approx(0.5) and result["df"] == pytest.approx(1)


def test_crossed_mean_test_of_a_table_without_spread():
    assert crossed_mean_test(np.full((3, 4), 0.1)) == {
        "difference": pytest.approx(0.1), "standard_error": 0.0, "df": pytest.approx(np.nan, nan_ok=True),
        "lower": pytest.approx(0.1), "upper": pytest.approx(0.1), "p_value": 0.0}
    nothing = crossed_mean_test(np.zeros((2, 3)))
    assert nothing["difference"] == nothing["lower"] == nothing["upper"] == 0.0 and nothing["p_value"] == 1.0
    rounding = 0.1 + np.array([[0.0, np.finfo(float).eps / 8], [np.finfo(float).eps / 8, 0.0]])
    assert crossed_mean_test(rounding)["standard_error"] == 0.0
    with pytest.raises(ValueError, match="confidence"):
        crossed_mean_test(np.zeros((2, 2)), confidence=1.0)


@pytest.mark.parametrize(("replicates", "seeds", "sds"), [(2, 5, (1.0, 1.0, 1.0)), (3, 5, (0.5, 2.0, 0.5)),
                                                         (2, 3, (1.0, 2.0, 1.0))])
def test_crossed_power_is_the_simulated_rejection_rate_of_the_crossed_test(replicates, seeds, sds):
    """Includes the 2 × 5 and 2 × 3 designs where the noncentral t with the Satterthwaite df of the expected mean
    squares misses the test's power at 2.5 standard errors by about 0.09 and 0.15 (0.25 for 0.34, 0.36 for 0.21)."""
    generator = np.random.default_rng(replicates * seeds)
    experiments = 20_000
    variances = tuple(sd ** 2 for sd in sds)
    standard_error = np.sqrt(variances[0] / replicates + variances[1] / seeds + variances[2] / (replicates * seeds))
    for effect in (0.0, 2.5 * standard_error):
        _, _, rejects = crossed_tests(simulate_crossed(generator, experiments, replicates, seeds, *sds, effect))
        assert rejects.mean() == pytest.approx(crossed_power(effect, *variances, replicates, seeds), abs=0.015)
    assert crossed_power(0.0, *variances, replicates, seeds) <= 0.05  # conservative, never liberal

    detectable = crossed_minimum_detectable_difference(*variances, replicates, seeds)
    assert crossed_power(detectable, *variances, replicates, seeds) == pytest.approx(0.8, abs=1e-6)
    assert crossed_power(-detectable, *variances, replicates, seeds) == pytest.approx(0.8, abs=1e-6)
    _, _, rejects = crossed_tests(simulate_crossed(generator, experiments, replicates, seeds, *sds, detectable))
    assert rejects.mean() == pytest.approx(0.8, abs=0.015)


def test_crossed_power_of_one_way_and_degenerate_designs():
    """One replicate: the t-test over seeds, S − 1 df, its standard error including the unseen training variance;
    one seed: the t-test over replicates, R − 1 df, including the unseen shared seed variance."""
    replicate_var, seed_var, residual_var, effect = 0.5, 1.0, 2.0, 1.2
    assert crossed_power(effect, replicate_var, seed_var, residual_var, 1, 5) == pytest.approx(
        paired_t_power(effect, np.sqrt(5 * replicate_var + seed_var + residual_var), 5))
    assert crossed_power(effect, replicate_var, seed_var, residual_var, 4, 1) == pytest.approx(
        paired_t_power(effect, np.sqrt(replicate_var + 4 * seed_var + residual_var), 4))
    assert crossed_minimum_detectable_difference(replicate_var, seed_var, residual_var, 1, 5) == pytest.approx(
        minimum_detectable_difference(np.sqrt(5 * replicate_var + seed_var + residual_var), 5))
    assert np.isnan(crossed_power(effect, 1.0, 1.0, 1.0, 1, 1))
    assert np.isnan(crossed_minimum_detectable_difference(1.0, 1.0, 1.0, 1, 1))
    for variances in [(np.nan, 1.0, 1.0), (1.0, np.nan, 1.0), (1.0, 1.0, np.nan)]:
        assert np.isnan(crossed_power(effect, *variances, 3, 5))
        assert np.isnan(crossed_minimum_detectable_difference(*variances, 3, 5))
    assert np.isnan(crossed_power(np.nan, 1.0, 1.0, 1.0, 3, 5))
    assert crossed_power(0.3, 0.0, 0.0, 0.0, 3, 5) == 1.0 and crossed_power(0.0, 0.0, 0.0, 0.0, 3, 5) == 0.05
    assert crossed_minimum_detectable_difference(0.0, 0.0, 0.0, 3, 5) == 0.0
    with pytest.raises(ValueError, match="negative"):
        crossed_power(effect, -0.1, 1.0, 1.0, 3, 5)
    with pytest.raises(ValueError, match="a replicate and a seed"):
        crossed_minimum_detectable_difference(1.0, 1.0, 1.0, 0, 5)
    with pytest.raises(ValueError, match="power goal"):
        crossed_minimum_detectable_difference(1.0, 1.0, 1.0, 3, 5, power=0.01)


def test_planning_table_rises_with_replicates_and_marks_an_unseen_training_variance():
    replicate_var, seed_var, residual_var, effect = 0.3, 1.0, 2.0, 1.5
    table = planning_table(replicate_var, seed_var, residual_var, effect)
    assert list(table.columns) == [
        "replicates", "seeds", "power", "minimum_detectable", "detects", "assumes_no_training_variance"]
    assert len(table) == 16 and not table["assumes_no_training_variance"].any()
    for _, by_replicates in table[table["replicates"] >= 2].groupby("replicates"):
        assert by_replicates["power"].is_monotonic_increasing
    # from one replicate to two the one-way test's S − 1 df fall to about 1: one-replicate rows are optimistic
    for _, by_seeds in table[table["replicates"] >= 2].groupby("seeds"):
        assert by_seeds["power"].is_monotonic_increasing
        assert by_seeds["minimum_detectable"].is_monotonic_decreasing
    for row in table.itertuples():
        design = (replicate_var, seed_var, residual_var, row.replicates, row.seeds)
        assert row.power == crossed_power(effect, *design)
        assert row.detects == (row.power >= 0.8)
        assert row.minimum_detectable == crossed_minimum_detectable_difference(*design)
        assert crossed_power(row.minimum_detectable, *design) == pytest.approx(0.8, abs=1e-6)
    assert table["detects"].any() and not table["detects"].all()

    lower_bound = planning_table(np.nan, seed_var, residual_var, effect)
    assert lower_bound["assumes_no_training_variance"].all()
    pd.testing.assert_frame_equal(
        lower_bound.drop(columns="assumes_no_training_variance"),
        planning_table(0.0, seed_var, residual_var, effect).drop(columns="assumes_no_training_variance"))


def test_planning_table_when_training_variance_dominates_and_for_a_pure_seed_variance():
    training = planning_table(1.0, 0.05, 0.05, 1.0, replicates=(2, 5, 10), units=(3, 10, 20)).set_index(
        ["replicates", "seeds"])["minimum_detectable"]
    # seeds stop helping: 10 to 20 seeds gain little, while going from 2 to 5 to 10 replicates gains a lot
    for replicate_count in (5, 10):
        assert training[replicate_count, 20] > 0.95 * training[replicate_count, 10]
    assert training[5, 3] < 0.5 * training[2, 20] and training[10, 3] < training[5, 20]

    # the advice for one observed replicate: all per-seed variance as seed variance, no residual. More replicates
    # then do not reduce it, and every row is the paired t-test over the seeds.
    seed_only = planning_table(np.nan, 0.04, 0.0, 0.1)
    for row in seed_only.itertuples():
        assert row.power == pytest.approx(paired_t_power(0.1, 0.2, row.seeds), abs=0.01)
        assert row.minimum_detectable == pytest.approx(minimum_detectable_difference(0.2, row.seeds), rel=0.02)
    assert seed_only["assumes_no_training_variance"].all()


def test_holm_adjusted_p_values_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04, made non-decreasing
    np.testing.assert_allclose(holm_adjusted([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjusted([0.5, 0.6]), [1.0, 1.0])
    with_nan = holm_adjusted([0.01, np.nan, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(with_nan, [0.03, np.nan, 0.06, 0.06, 0.02])
    assert holm_adjusted(np.array([[0.01, 0.02], [0.03, np.nan]])).shape == (2, 2)
    assert holm_adjusted([]).size == 0 and np.isnan(holm_adjusted([np.nan])).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        holm_adjusted([0.2, 1.2])


def test_benjamini_hochberg_adjusted_p_values_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4 / rank: 0.02, 0.02, 0.04, 0.04, made non-decreasing from the top
    np.testing.assert_allclose(fdr_adjusted([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(fdr_adjusted([np.nan, 0.01, 0.04, 0.03, 0.005]), [np.nan, 0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(fdr_adjusted([0.2, 0.9]), [0.4, 0.9])
    assert fdr_adjusted([]).size == 0 and np.isnan(fdr_adjusted([np.nan, np.nan])).all()
    assert MULTIPLICITY_METHODS == {"holm": holm_adjusted, "fdr_bh": fdr_adjusted}
