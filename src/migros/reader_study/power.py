"""How many pairs one reader must judge for the exact binomial test to show a preference.

Each reader's choices between two methods are tested with the exact two-sided binomial test against no
preference (1/2). Its power is not monotone in the number of pairs: the test's attainable p-values jump, so
adding a pair can lower the power (at a true 70 % preference, 49 pairs reach 81 % power, 50 pairs only 78 %).
`pairs_needed` therefore gives both the first number of pairs that reaches the goal and the number from which
every larger one does.
"""

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def exact_test_p_values(pairs: int) -> np.ndarray:
    """Two-sided exact binomial p-value against 1/2 of every count 0..pairs of choices for one side.

    Against 1/2 the distribution is symmetric, so the outcomes at most as likely as k are the two tails beyond
    min(k, pairs - k); this equals scipy.stats.binomtest(k, pairs).pvalue, for all k at once.
    """
    counts = np.arange(pairs + 1)
    return np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(counts, pairs - counts), pairs, 0.5))


def exact_test_power(pairs: int, preference: float, alpha: float) -> float:
    """Chance that the exact test at level `alpha` rejects no preference when the reader picks one method with
    probability `preference`."""
    counts = np.arange(pairs + 1)
    return float(stats.binom.pmf(counts, pairs, preference)[exact_test_p_values(pairs) <= alpha].sum())


def pairs_needed(preference: float, power: float, alpha: float) -> tuple[int, int]:
    """(first, stable): the smallest number of pairs whose power reaches `power`, and the smallest from which
    every larger number does too (checked up to twice the first plus 50, beyond which the power's dips are far
    above any goal reached before)."""
    if not 0.5 < preference < 1:
        raise ValueError(f"the preference to detect must lie strictly between 0.5 and 1, got {preference}")
    pairs = 1
    while exact_test_power(pairs, preference, alpha) < power:
        pairs += 1
    first = pairs
    falling_short = [n for n in range(first, 2 * first + 50) if exact_test_power(n, preference, alpha) < power]
    return first, (falling_short[-1] + 1 if falling_short else first)


@dataclass(frozen=True)
class PowerStatement:
    """What a pack says about its power, for one reader and one pair of methods."""

    preference: float  # the true preference to detect
    power_goal: float
    alpha: float
    pairs_needed: int  # the first number of pairs per class reaching the goal
    pairs_needed_stable: int  # from here on every number of pairs reaches it
    pairs_per_class: int  # what the pack has
    power_per_class: float  # of the test on one class's pairs
    power_per_comparison: float  # of the test on both classes' pairs together
    meets_goal: bool  # power_per_class reaches the goal
    test: str = "exact two-sided binomial test of one reader's choices against no preference (1/2)"

    @classmethod
    def of(cls, pairs_per_class: int, classes: int, preference: float, power_goal: float, alpha: float):
        first, stable = pairs_needed(preference, power_goal, alpha)
        per_class = exact_test_power(pairs_per_class, preference, alpha)
        return cls(preference, power_goal, alpha, first, stable, pairs_per_class, per_class,
                   exact_test_power(classes * pairs_per_class, preference, alpha), per_class >= power_goal)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "meets" if self.meets_goal else "FALLS SHORT OF"
        return (f"{self.pairs_per_class} pairs per class: power {self.power_per_class:.2f} per class and "
                f"{self.power_per_comparison:.2f} over both classes to detect a {self.preference:.0%} preference "
                f"(alpha {self.alpha}); {verdict} the goal of {self.power_goal:.0%}, first reached at "
                f"{self.pairs_needed} pairs and at every number from {self.pairs_needed_stable} on")
