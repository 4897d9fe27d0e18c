"""ROC curves of the downstream classifier, per condition, pooled over the classifier seeds with a band, from the
per-image test predictions (results/<dataset>/classifier/predictions.csv) that the AUCs are computed from.

Each seed's curve is read at a common grid of false-positive rates (vertical averaging: the highest true-positive
rate reached at each false-positive rate), and the band is the Student-t 95 % interval of the mean over seeds at
each grid point, the same interval as the AUCs' in the tables.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from migros.evaluation.classifier_settings import TSTR_PREFIX, VAE_RECONSTRUCTION
from migros.evaluation.statistics import INTERVAL_CONFIDENCE, t_half_width

FALSE_POSITIVE_GRID = np.linspace(0, 1, 101)


def tpr_at(false_positive_rates: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The ROC curve's highest true-positive rate at each false-positive rate of the grid (a step curve: the
    rate reached once that many negatives are let through)."""
    fpr, tpr, _ = roc_curve(labels, probabilities)
    indices = np.searchsorted(fpr, false_positive_rates, side="right") - 1
    return tpr[indices]


def roc_bands(predictions: pd.DataFrame, grid: np.ndarray = FALSE_POSITIVE_GRID) -> pd.DataFrame:
    """Per condition and grid point: mean TPR over the seeds, its interval (NaN with one seed), the number of
    seeds and the mean AUC. Columns condition, fpr, tpr, lower, upper, seeds, auc."""
    frames = []
    for condition, rows in predictions.groupby("condition", sort=False):
        curves = np.array([tpr_at(grid, seed.label.to_numpy(), seed.probability.to_numpy())
                           for _, seed in rows.groupby("seed")])
        aucs = [roc_auc_score(seed.label, seed.probability) for _, seed in rows.groupby("seed")]
        mean = curves.mean(axis=0)
        half = (np.array([t_half_width(column, INTERVAL_CONFIDENCE) for column in curves.T]) if len(curves) > 1
                else np.full(len(grid), np.nan))
        frames.append(pd.DataFrame({"condition": condition, "fpr": grid, "tpr": mean,
                                    "lower": np.clip(mean - half, 0, 1), "upper": np.clip(mean + half, 0, 1),
                                    "seeds": len(curves), "auc": float(np.mean(aucs))}))
    return pd.concat(frames, ignore_index=True)


def panels(conditions: list[str]) -> dict[str, list[str]]:
    """Real images in the training set (real only and each augmentation), and the rest: synthetic-only training
    and the real-only classifier tested on the VAE's reconstructions, each beside real only."""
    with_real = [condition for condition in conditions if condition == "real" or condition.startswith("real+")]
    others = [condition for condition in conditions if condition.startswith(TSTR_PREFIX) or condition == VAE_RECONSTRUCTION]
    chosen = {"trained with the real training slices": with_real}
    if others:
        chosen["trained on one generated set alone, or tested on VAE reconstructions"] = ["real", *others]
    return chosen


def roc_figure(predictions: pd.DataFrame, title: str) -> Figure:
    bands = roc_bands(predictions)
    chosen = panels(list(bands.condition.unique()))
    figure = Figure(figsize=(6 * len(chosen), 5.4), layout="constrained")
    for axis, (name, conditions) in zip(figure.subplots(1, len(chosen), squeeze=False)[0], chosen.items()):
        for condition in conditions:
            band = bands[bands.condition == condition]
            (line,) = axis.step(band.fpr, band.tpr, where="post", linewidth=1.6,
                                label=f"{condition}: AUC {band.auc.iloc[0]:.3f} ({band.seeds.iloc[0]} seeds)")
            axis.fill_between(band.fpr, band.lower, band.upper, step="post", color=line.get_color(), alpha=0.18)
        axis.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="chance")
        axis.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (healthy called tumour)",
                 ylabel="true-positive rate (tumour found)", title=name, aspect="equal")
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle(f"{title}: mean over seeds, band = 95 % interval of the mean")
    return figure


def plot_roc_curves(predictions_csv: Path, title: str, figure_png: Path) -> None:
    roc_figure(pd.read_csv(predictions_csv), title).savefig(figure_png, dpi=110)
