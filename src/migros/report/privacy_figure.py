"""Member against non-member scores of the membership-inference audit, one panel per method of a dataset.

Each panel shows the attack that tells most about that method: the loss difference (base model's loss minus
the adapted model's) for the adapters, the adapted model's loss for the base model (no_adaptation: its loss
difference is 0), and the distance to the nearest generated image for the GANs, which have no denoising loss.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from migros.evaluation.membership_settings import MEMBER, NO_DENOISING_LOSS_KINDS, NON_MEMBER

# what a panel shows, by the method's role: (score column expression, axis label)
FIGURE_SCORES = {
    "adapter": ("loss_difference", "loss difference: base loss − adapted loss (higher = member)"),
    "base": ("loss", "−loss of the base model (higher = member)"),
    "gan": ("distance", "−distance to the nearest generated image (higher = member)"),
}


def figure_role(kind: str | None) -> str:
    """'base' for no_adaptation (kind None), 'gan' for the GAN kinds, else 'adapter'."""
    if kind is None:
        return "base"
    return "gan" if kind in NO_DENOISING_LOSS_KINDS else "adapter"


def shown_scores(scores: pd.DataFrame, attack: str) -> pd.Series:
    """The same scores as `membership.attack_scores` (that module needs torch's environment)."""
    return {"loss": lambda: -scores.loss_adapted, "loss_difference": lambda: scores.loss_base - scores.loss_adapted,
            "distance": lambda: -scores.min_distance}[attack]()


def pairwise_auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """ROC AUC as the share of (member, non-member) pairs the score orders right, ties counting half."""
    greater = (members[:, None] > non_members[None]).mean()
    return float(greater + 0.5 * (members[:, None] == non_members[None]).mean())


def privacy_figure(runs: dict[str, tuple[Path, str | None]], title: str) -> Figure:
    """`runs` maps a method to (its scores CSV, its config kind; None for no_adaptation)."""
    columns = min(3, len(runs))
    rows = -(-len(runs) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    for index, (method, (scores_csv, kind)) in enumerate(runs.items()):
        attack, label = FIGURE_SCORES[figure_role(kind)]
        scores = pd.read_csv(scores_csv)
        values = shown_scores(scores, attack)
        members, non_members = values[scores.role == MEMBER].to_numpy(), values[scores.role == NON_MEMBER].to_numpy()
        axis = figure.add_subplot(rows, columns, index + 1)
        bins = np.histogram_bin_edges(np.r_[members, non_members], bins=min(30, max(5, len(values) // 3)))
        axis.hist(members, bins=bins, alpha=0.6, label=f"members (training, n={len(members)})")
        axis.hist(non_members, bins=bins, alpha=0.6, label=f"non-members (test, n={len(non_members)})")
        axis.set_title(f"{method}: AUC {pairwise_auc(members, non_members):.2f}", fontsize=9)
        axis.set_xlabel(label, fontsize=8)
        axis.set_ylabel("images")
        axis.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))  # loss differences can be ~1e-4
        axis.yaxis.get_major_locator().set_params(integer=True)
        axis.legend(fontsize=7)
    figure.suptitle(f"{title}: membership-inference scores, members vs non-members (AUC 0.5 = no signal)")
    return figure


def plot_privacy_figure(runs: dict[str, tuple[Path, str | None]], title: str, figure_png: Path) -> None:
    privacy_figure(runs, title).savefig(figure_png, dpi=110)
