"""Intervals and paired comparisons: coverage and error rates on simulated data where the truth is known.

Each check repeats a small experiment a few hundred times with fixed seeds, so it is deterministic; the accepted
ranges are a few binomial standard errors wide around the nominal rate.
"""

import warnings

import numpy as np
import pytest

from migros.evaluation.statistics import (
    paired_comparison, percentile_bootstrap, recentred_bootstrap, seed_interval,
)


def test_percentile_bootstrap_of_a_mean_covers_the_true_mean_at_about_the_nominal_rate():
    generator = np.random.default_rng(0)
    repetitions, true_mean = 300, 2.0
    covered = 0
    for repetition in range(repetitions):
        sample = generator.normal(true_mean, 3.0, 50)
        lower, upper = percentile_bootstrap(np.mean, (sample,), resamples=400, confidence=0.95, seed=repetition)
        covered += lower <= true_mean <= upper
    assert 0.90 <= covered / repetitions <= 0.98


def test_percentile_bootstrap_resamples_each_set_independently_and_repeats_with_its_seed():
    first, second = np.arange(10.0), np.arange(3.0)
    seen_lengths = set()

    def difference_of_means(a, b):
        seen_lengths.add((len(a), len(b)))
        return a.mean() - b.mean()

    interval = percentile_bootstrap(difference_of_means, (first, second), resamples=200, confidence=0.9, seed=5)
    assert seen_lengths == {(10, 3)}
    assert interval == percentile_bootstrap(difference_of_means, (first, second), 200, 0.9, seed=5)
    assert interval[0] < first.mean() - second.mean() < interval[1]
    with pytest.raises(ValueError, match="at least one resample"):
        percentile_bootstrap(np.mean, (first,), resamples=0, confidence=0.95, seed=0)


def test_recentred_bootstrap_keeps_the_spread_around_an_estimate_that_resampling_shifts():
    """The number of distinct values falls to about 63 % in a resample: a statistic the bootstrap shifts."""
    sample = np.arange(100.0)

    def distinct_count(values):
        return float(len(np.unique(values)))

    lower, upper = percentile_bootstrap(distinct_count, (sample,), resamples=300, confidence=0.95, seed=0)
    assert upper < 100
    lower, upper = recentred_bootstrap(distinct_count, (sample,), resamples=300, confidence=0.95, seed=0)
    assert lower < 100 < upper and upper - lower < 20


def test_bootstrap_leaves_out_resamples_where_the_statistic_is_undefined():
    def mean_unless_constant(values):
        return np.nan if np.ptp(values) == 0 else values.mean()

    lower, upper = percentile_bootstrap(mean_unless_constant, (np.array([0.0, 1.0]),), 200, 0.95, seed=0)
    assert (lower, upper) == (0.5, 0.5)  # the only defined resamples hold both values
    assert np.isnan(percentile_bootstrap(mean_unless_constant, (np.array([1.0]),), 20, 0.95, seed=0)[0])


def test_seed_interval_covers_the_true_mean_of_five_seeds_at_about_the_nominal_rate():
    generator = np.random.default_rng(1)
    repetitions, true_mean = 1000, 0.8
    covered = 0
    for _ in range(repetitions):
        mean, lower, upper = seed_interval(generator.normal(true_mean, 0.05, 5))
        assert lower < mean < upper
        covered += lower <= true_mean <= upper
    assert 0.93 <= covered / repetitions <= 0.97


def test_seed_interval_of_one_seed_has_no_bounds():
    mean, lower, upper = seed_interval([0.7])
    assert mean == 0.7 and np.isnan(lower) and np.isnan(upper)


def test_paired_comparison_finds_a_planted_difference_over_five_seeds():
    generator = np.random.default_rng(2)
    a = generator.normal(0.85, 0.03, 5)  # seeds differ a lot; the pairing removes that
    b = a - 0.1 + generator.normal(0, 0.01, 5)
    result = paired_comparison(a, b)
    assert result["difference"] == pytest.approx(0.1, abs=0.03)
    assert result["lower"] > 0 and result["p_value"] < 0.05 and result["distinguishable"] and result["n"] == 5


def test_paired_comparison_without_a_difference_is_distinguishable_about_five_percent_of_the_time():
    generator = np.random.default_rng(3)
    repetitions = 1000
    false_positives, small_p = 0, 0
    for _ in range(repetitions):
        result = paired_comparison(generator.normal(0.8, 0.05, 5), generator.normal(0.8, 0.05, 5))
        false_positives += result["distinguishable"]
        small_p += result["p_value"] < 0.05
    assert 0.02 <= false_positives / repetitions <= 0.09
    assert small_p == false_positives  # the interval and the test are the same t statistic


def test_paired_comparison_of_identical_or_constantly_shifted_values_needs_no_warning():
    values = np.array([0.8, 0.9, 0.85, 0.7, 0.75])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = paired_comparison(values, values)
        shifted = paired_comparison(values + 0.5, values)
    assert same["difference"] == 0 and same["p_value"] == 1 and not same["distinguishable"]
    assert shifted["lower"] == shifted["upper"] == pytest.approx(0.5) and shifted["p_value"] == 0
    assert shifted["distinguishable"]
    with pytest.raises(ValueError, match="equal length"):
        paired_comparison(values, values[:4])
