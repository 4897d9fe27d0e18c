"""What the readers' answers show: tidy rows (`migros.evaluation.statistics.TIDY_COLUMNS`) for results/metrics.csv.

For each compared pair of methods "A vs B" (method column), over all its items and per class (`_healthy`,
`_tumour` appended to the metric):

- `reader_preference[<reader>]`: the share of that reader's answers choosing A, with the exact Clopper-Pearson
  interval, and `reader_preference_p_value[<reader>]`: the exact two-sided binomial test against 1/2.
- `reader_preference`: the share over all readers' answers. Its interval treats the reader as the cluster: a
  two-stage bootstrap draws readers with replacement, then each drawn reader's answers with replacement. Answers of
  one reader are not independent (a reader has a taste), so an interval over pooled answers would be too narrow;
  with few readers a bootstrap over readers alone would be too narrow as well (two readers with the same share
  give an interval of width 0), which the second stage prevents.
- `reader_fleiss_kappa`: Fleiss' kappa of the readers' choices over the shared items, with a bootstrap interval
  over items (readers who skipped items are allowed: each item counts the readers who answered it).

Over all comparisons (method `all_comparisons`): `reader_left_share[<reader>]` and `reader_left_share` (position
bias: the share of answers choosing the left image; readers' sides are counterbalanced, so a share far from 1/2
is a habit of the reader, not of the methods), with `reader_left_p_value[<reader>]`, and
`reader_median_seconds[<reader>]` / `reader_median_seconds` (viewing time per pair, pauses excluded).

With more than two methods, `bradley_terry_log_strength` (method column: each method): the Bradley-Terry model
P(i preferred to j) = 1 / (1 + exp(-(s_i - s_j))) fitted by maximum likelihood, strengths centred to mean 0, with
the same two-stage bootstrap interval.
"""

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from migros.evaluation.statistics import INTERVAL_CONFIDENCE, TIDY_COLUMNS, bootstrap_percentiles
from migros.reader_study.pack_format import CLASS_NAMES
from migros.reader_study.store import EXPORT_COLUMNS

ALL_COMPARISONS = "all_comparisons"
# keeps strengths finite when a method never wins (a Gaussian prior of standard deviation 10 on each)
BRADLEY_TERRY_RIDGE = 0.01


def reader_metric(metric: str, reader: str) -> str:
    return f"{metric}[{reader}]"


def row(dataset: str, method: str, metric: str, value: float, lower: float, upper: float, n: int) -> dict:
    return {"dataset": dataset, "method": method, "metric": metric, "value": float(value), "lower": float(lower),
            "upper": float(upper), "n": int(n)}


def clopper_pearson(successes: int, trials: int) -> tuple[float, float]:
    interval = stats.binomtest(successes, trials).proportion_ci(INTERVAL_CONFIDENCE, method="exact")
    return interval.low, interval.high


def two_stage_shares(successes: np.ndarray, trials: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap values of the pooled share sum(successes) / sum(trials) over readers (one entry per reader):
    readers drawn with replacement, then each drawn reader's answers (a binomial draw at the reader's share)."""
    generator = np.random.default_rng(seed)
    drawn = generator.integers(0, len(trials), (resamples, len(trials)))
    counts = generator.binomial(trials[drawn], successes[drawn] / trials[drawn])
    return counts.sum(axis=1) / trials[drawn].sum(axis=1)


def share_rows(dataset: str, method: str, metric: str, chosen: pd.Series, readers: pd.Series, resamples: int,
               seed: int) -> list[dict]:
    """Per reader and pooled share of True in `chosen` (see the module's description of metrics)."""
    rows = []
    per_reader = chosen.groupby(readers, sort=False).agg(["sum", "count"])
    for reader, (successes, trials) in per_reader.iterrows():
        rows.append(row(dataset, method, reader_metric(metric, reader), successes / trials,
                        *clopper_pearson(int(successes), int(trials)), trials))
        rows.append(row(dataset, method, reader_metric(f"{metric}_p_value", reader),
                        stats.binomtest(int(successes), int(trials)).pvalue, np.nan, np.nan, trials))
    successes, trials = per_reader["sum"].to_numpy(), per_reader["count"].to_numpy()
    lower, _, upper = bootstrap_percentiles(two_stage_shares(successes, trials, resamples, seed), INTERVAL_CONFIDENCE)
    rows.append(row(dataset, method, metric, successes.sum() / trials.sum(), lower, upper, trials.sum()))
    return rows


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an items x categories table of how many readers put each item in each category.

    Items may have different numbers of readers (each item's agreement is over its own readers); items with
    fewer than two are left out. With the same number everywhere this is Fleiss (1971)."""
    counts = counts[counts.sum(axis=1) >= 2]
    raters = counts.sum(axis=1)
    agreement = ((counts * (counts - 1)).sum(axis=1) / (raters * (raters - 1))).mean()
    chance = ((counts.sum(axis=0) / raters.sum()) ** 2).sum()
    return float((agreement - chance) / (1 - chance)) if chance < 1 else np.nan


def kappa_rows(dataset: str, method: str, item_choices: pd.DataFrame, resamples: int, seed: int) -> list[dict]:
    """Fleiss' kappa of the choice of A over the items two or more readers answered, bootstrap over items."""
    counts = pd.crosstab(item_choices.item, item_choices.chose_a).reindex(columns=[False, True], fill_value=0)
    counts = counts[counts.sum(axis=1) >= 2].to_numpy()
    if len(counts) < 2:
        return []
    generator = np.random.default_rng(seed)
    values = np.array([fleiss_kappa(counts[generator.integers(0, len(counts), len(counts))])
                       for _ in range(resamples)])
    lower, _, upper = bootstrap_percentiles(values, INTERVAL_CONFIDENCE)
    return [row(dataset, method, "reader_fleiss_kappa", fleiss_kappa(counts), lower, upper, len(counts))]


def fit_bradley_terry(wins: np.ndarray) -> np.ndarray:
    """Centred log-strengths from a methods x methods table, wins[i, j] = answers preferring i to j."""
    def objective(strengths):
        difference = strengths[:, None] - strengths[None, :]
        loss = (wins * np.logaddexp(0, -difference)).sum() + BRADLEY_TERRY_RIDGE / 2 * strengths @ strengths
        pull = wins * special.expit(-difference)  # d loss / d difference = -pull
        return loss, -pull.sum(axis=1) + pull.sum(axis=0) + BRADLEY_TERRY_RIDGE * strengths

    strengths = optimize.minimize(objective, np.zeros(len(wins)), jac=True, method="L-BFGS-B").x
    return strengths - strengths.mean()


def win_table(winners: np.ndarray, losers: np.ndarray, methods: int) -> np.ndarray:
    wins = np.zeros((methods, methods))
    np.add.at(wins, (winners, losers), 1)
    return wins


def bradley_terry_rows(dataset: str, answers: pd.DataFrame, resamples: int, seed: int) -> list[dict]:
    methods = list(dict.fromkeys([*answers.method_a, *answers.method_b]))
    index = {method: position for position, method in enumerate(methods)}
    winners = answers.chosen_method.map(index).to_numpy()
    losers = np.where(answers.chosen_method == answers.method_a, answers.method_b, answers.method_a)
    losers = pd.Series(losers).map(index).to_numpy()
    strengths = fit_bradley_terry(win_table(winners, losers, len(methods)))
    rows_of_reader = [np.flatnonzero(answers.reader.to_numpy() == reader) for reader in answers.reader.unique()]
    generator = np.random.default_rng(seed)
    values = np.empty((resamples, len(methods)))
    for resample in range(resamples):
        readers = generator.integers(0, len(rows_of_reader), len(rows_of_reader))
        drawn = np.concatenate([generator.choice(rows_of_reader[reader], len(rows_of_reader[reader]))
                                for reader in readers])
        values[resample] = fit_bradley_terry(win_table(winners[drawn], losers[drawn], len(methods)))
    rows = []
    for method, position in index.items():
        lower, _, upper = bootstrap_percentiles(values[:, position], INTERVAL_CONFIDENCE)
        involved = ((answers.method_a == method) | (answers.method_b == method)).sum()
        rows.append(row(dataset, method, "bradley_terry_log_strength", strengths[position], lower, upper, involved))
    return rows


def time_rows(dataset: str, answers: pd.DataFrame) -> list[dict]:
    seconds = answers.response_ms / 1000
    rows = [row(dataset, ALL_COMPARISONS, reader_metric("reader_median_seconds", reader), value, np.nan, np.nan,
                (answers.reader == reader).sum())
            for reader, value in seconds.groupby(answers.reader, sort=False).median().items()]
    return rows + [row(dataset, ALL_COMPARISONS, "reader_median_seconds", seconds.median(), np.nan, np.nan,
                       len(answers))]


def read_answers(answers_csv, dataset: str) -> pd.DataFrame:
    """The exported answers of `dataset`'s study; an error says what is wrong with another file."""
    answers = pd.read_csv(answers_csv, dtype={"reader": str})
    if missing := sorted(set(EXPORT_COLUMNS) - set(answers.columns)):
        raise ValueError(f"{answers_csv} lacks the columns {missing}: write it with `migros-reader-study export`")
    if answers.empty:
        raise ValueError(f"{answers_csv} holds no answers yet")
    if set(answers.dataset) != {dataset}:
        raise ValueError(f"{answers_csv} holds answers of {sorted(set(answers.dataset))}, not of {dataset}: check "
                         "reader_study.answers")
    return answers


def study_statistics(dataset: str, answers: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """Every statistic of the module's description, as tidy rows."""
    rows = []
    for (method_a, method_b), compared in answers.groupby(["method_a", "method_b"]):
        method = f"{method_a} vs {method_b}"
        chose_a = compared.chosen_method == method_a
        rows += share_rows(dataset, method, "reader_preference", chose_a, compared.reader, resamples, seed)
        for name in CLASS_NAMES.values():
            in_class = compared["class"] == name
            if in_class.any():
                rows += share_rows(dataset, method, f"reader_preference_{name}", chose_a[in_class],
                                   compared.reader[in_class], resamples, seed)
        rows += kappa_rows(dataset, method, compared.assign(chose_a=chose_a), resamples, seed)
    rows += share_rows(dataset, ALL_COMPARISONS, "reader_left_share", answers.chosen_side == "left", answers.reader,
                       resamples, seed)
    rows += time_rows(dataset, answers)
    if len(set(answers.method_a) | set(answers.method_b)) > 2:
        rows += bradley_terry_rows(dataset, answers, resamples, seed)
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)
