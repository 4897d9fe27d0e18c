"""The reader study's figure for the report, drawn from its tidy statistics (`migros.reader_study.statistics`).

One panel per compared pair of methods (each reader's share choosing the first method with its exact interval,
and all readers pooled with the reader-clustered interval; over all pairs and per class), one of position bias
(each reader's share of left choices) and, with more than two methods, one of the Bradley-Terry strengths.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from migros.reader_study.pack_format import CLASS_NAMES

POOLED = "all readers"
SUBSETS = {"": ("all pairs", "black"), **{f"_{name}": (name, colour)
                                        for name, colour in zip(CLASS_NAMES.values(), ("tab:blue", "tab:orange"))}}


def split_metrics(statistics: pd.DataFrame) -> pd.DataFrame:
    """The rows with `base` (the metric without its reader) and `reader` (POOLED for the pooled rows)."""
    parts = statistics.metric.str.extract(r"^(?P<base>[a-z_]+)(?:\[(?P<reader>.+)\])?$")
    return statistics.assign(base=parts.base, reader=parts.reader.fillna(POOLED))


def interval_panel(axis, rows: pd.DataFrame, labels: list[str], offset: float, colour: str, legend: str) -> None:
    """Values with their intervals (`rows` indexed by label) as horizontal bars, one line per label, top down."""
    rows = rows.reindex(labels)
    positions = np.arange(len(labels))[::-1] + offset
    errors = np.abs(rows[["lower", "upper"]].to_numpy().T - rows.value.to_numpy())
    axis.errorbar(rows.value, positions, xerr=np.nan_to_num(errors), fmt="o", color=colour, markersize=4, capsize=2,
                  label=legend)
    axis.set_yticks(np.arange(len(labels))[::-1], labels, fontsize=8)


def share_panel(axis, table: pd.DataFrame, method: str, base: str, xlabel: str, title: str) -> None:
    readers = [reader for reader in dict.fromkeys(table.reader[(table.base == base) & (table.method == method)])
               if reader != POOLED] + [POOLED]
    subsets = {suffix: style for suffix, style in SUBSETS.items()
               if ((table.method == method) & (table.base == base + suffix)).any()}
    for index, (suffix, (legend, colour)) in enumerate(subsets.items()):
        rows = table[(table.method == method) & (table.base == base + suffix)].set_index("reader")
        interval_panel(axis, rows, readers, 0.2 * ((len(subsets) - 1) / 2 - index), colour, legend)
    axis.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xlim(0, 1)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_title(title, fontsize=9)


def value_of(table: pd.DataFrame, method: str, metric: str) -> float | None:
    found = table.value[(table.method == method) & (table.metric == metric)]
    return float(found.iloc[0]) if len(found) else None


def reader_study_figure(statistics: pd.DataFrame, title: str) -> Figure:
    table = split_metrics(statistics)
    comparisons = list(dict.fromkeys(table.method[table.base == "reader_preference"]))
    strengths = table[table.base == "bradley_terry_log_strength"]
    panels = len(comparisons) + 1 + (not strengths.empty)
    columns = min(3, panels)
    rows = -(-panels // columns)
    figure = Figure(figsize=(4.6 * columns, 3.6 * rows), layout="constrained")
    axes = iter(figure.subplots(rows, columns, squeeze=False).ravel())
    for comparison in comparisons:
        first = comparison.split(" vs ")[0]
        kappa = value_of(table, comparison, "reader_fleiss_kappa")
        share_panel(next(axes), table, comparison, "reader_preference", f"share of answers choosing {first}",
                    comparison + ("" if kappa is None else f" (Fleiss' kappa {kappa:.2f})"))
    seconds = value_of(table, "all_comparisons", "reader_median_seconds")
    share_panel(next(axes), table, "all_comparisons", "reader_left_share", "share of answers choosing the left image",
                f"position bias (median {seconds:.1f} s per pair)")
    if not strengths.empty:
        axis = next(axes)
        interval_panel(axis, strengths.set_index("method"), list(strengths.method), 0, "black", None)
        axis.axvline(0, color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlabel("Bradley-Terry log-strength (mean 0)", fontsize=8)
        axis.set_title("all methods", fontsize=9)
    for axis in axes:
        axis.set_visible(False)
    figure.axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3)  # clear of the bars
    figure.suptitle(f"{title}: reader study (95 % intervals)")
    return figure


def plot_reader_study(statistics_csv: Path, title: str, figure_png: Path) -> None:
    reader_study_figure(pd.read_csv(statistics_csv), title).savefig(figure_png, dpi=120)
