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
    MULTIPLICITY_METHODS, fdr_adjusted, holm_adjusted, minimum_detectable_difference,
    nested_minimum_detectable_difference, nested_power, paired_t_power, planning_table, replicate_interval,
    variance_components, within_replicate_interval,
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


def test_variance_components_by_hand_and_on_a_large_simulated_design():
    groups = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 6.0])]
    # within: (2 + 2) / 3; between mean square 10.8, n0 = (5 − 13/5) / 1 = 2.4
    between, within = variance_components(groups)
    assert within == pytest.approx(4 / 3) and between == pytest.approx((10.8 - 4 / 3) / 2.4)
    frame = pd.DataFrame({"replicate": ["a", "a", "a", "b", "b"], "value": np.concatenate(groups)})
    assert variance_components(frame) == pytest.approx((between, within))
    assert variance_components(frame["value"], frame["replicate"]) == pytest.approx((between, within))

    generator = np.random.default_rng(7)
    between, within = variance_components(simulate_replicates(generator, 2000, 10, 2.0, 1.0))
    assert between == pytest.approx(4.0, abs=0.4) and within == pytest.approx(1.0, abs=0.03)

    assert variance_components([np.array([1.0, 3.0]), np.array([3.0, 1.0])]) == (0.0, 2.0)  # clipped at 0
    between, within = variance_components([np.array([1.0, 2.0, 4.0])])
    assert np.isnan(between) and within == pytest.approx(7 / 3)
    assert all(np.isnan(variance_components([np.array([1.0]), np.array([2.0])])))


@pytest.mark.parametrize(("between_var", "replicates", "units"), [(0.5, 3, 10), (0.0, 2, 5)])
def test_nested_power_matches_the_test_its_degrees_of_freedom_describe(between_var, replicates, units):
    """With training variance the t-test over replicate means (R − 1 df); without, over all units (R·S − 1 df)."""
    generator = np.random.default_rng(replicates)
    within_var, experiments, effect = 4.0, 20_000, 1.2
    values = (effect + generator.normal(0.0, np.sqrt(between_var), (experiments, replicates, 1))
              + generator.normal(0.0, np.sqrt(within_var), (experiments, replicates, units)))
    tested = values.mean(axis=2) if between_var > 0 else values.reshape(experiments, -1)
    simulated = t_test_rejects(tested).mean()
    assert simulated == pytest.approx(nested_power(effect, between_var, within_var, replicates, units), abs=0.015)


def test_planning_table_rises_with_replicates_and_seeds_and_marks_an_unseen_training_variance():
    between_var, within_var, effect = 0.3, 4.0, 1.5
    table = planning_table(between_var, within_var, effect)
    assert list(table.columns) == [
        "replicates", "seeds", "power", "minimum_detectable", "detects", "assumes_no_training_variance"]
    assert len(table) == 16 and not table["assumes_no_training_variance"].any()
    for _, by_replicates in table.groupby("replicates"):
        assert by_replicates["power"].is_monotonic_increasing
    # from one replicate to two the df falls from S − 1 to 1: the one-replicate rows are optimistic bounds
    for _, by_seeds in table[table["replicates"] >= 2].groupby("seeds"):
        assert by_seeds["power"].is_monotonic_increasing
    for row in table.itertuples():
        design = (between_var, within_var, row.replicates, row.seeds)
        assert row.power == nested_power(effect, *design)
        assert row.detects == (row.power >= 0.8)
        assert row.minimum_detectable == nested_minimum_detectable_difference(*design)
        assert nested_power(row.minimum_detectable, *design) == pytest.approx(0.8, abs=1e-9)
    detecting = table[table["detects"]]
    smallest = detecting.loc[(detecting["replicates"] * detecting["seeds"]).idxmin()]
    assert smallest["minimum_detectable"] <= effect
    smaller = table[(table["replicates"] <= smallest["replicates"]) & (table["seeds"] <= smallest["seeds"])]
    assert smaller["detects"].sum() == 1  # nothing with fewer replicates and fewer seeds detects

    lower_bound = planning_table(np.nan, within_var, effect)
    assert lower_bound["assumes_no_training_variance"].all()
    pd.testing.assert_frame_equal(
        lower_bound.drop(columns="assumes_no_training_variance"),
        planning_table(0.0, within_var, effect).drop(columns="assumes_no_training_variance"))
    assert np.isnan(nested_power(effect, np.nan, within_var, 3, 5))


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
