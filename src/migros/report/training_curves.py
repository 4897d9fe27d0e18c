"""Fine-tuning curves of one dataset: loss, adapter size and per-layer ranks over the steps, from each method's
loss.csv and rank_history.csv (every rank change: SeLoRA's growth, ARENA's and AdaLoRA's pruning, and ARENA's
gates that return)."""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def ranks_over_steps(history: pd.DataFrame) -> pd.DataFrame:
    """Layer x step table of the rank in force after each logged step (history lists changes only)."""
    steps = np.sort(history["step"].unique())
    wide = history.pivot_table(index="layer", columns="step", values="rank", aggfunc="last")
    return wide.reindex(columns=steps).ffill(axis=1)


def parameters_over_steps(history: pd.DataFrame) -> pd.Series:
    """Total LoRA parameters (rank × (in + out) per layer) after each logged step; the last is the exported
    adapter's size."""
    steps = np.sort(history["step"].unique())
    wide = history.pivot_table(index="layer", columns="step", values="parameters", aggfunc="last")
    return wide.reindex(columns=steps).ffill(axis=1).sum(axis=0)


def training_curves_figure(runs: dict[str, tuple[Path, Path]], title: str) -> Figure:
    """`runs` maps a method name to its (loss.csv, rank_history.csv).

    Top: loss (moving mean over an epoch's worth of steps) and total trainable parameters per method. Below: one
    heatmap per method whose ranks changed (SeLoRA, ARENA, AdaLoRA), layer against step, so users see which layers
    grew or shrank and when; the last column holds the final ranks, which the adapter is exported with.
    """
    histories = {method: pd.read_csv(ranks) for method, (_, ranks) in runs.items()}
    growing = [method for method, history in histories.items() if history["rank"].nunique() > 1]
    rows = 1 + int(np.ceil(len(growing) / 2))
    figure = Figure(figsize=(12, 4 * rows), layout="constrained")
    grid = figure.add_gridspec(rows, 2)
    loss_axis, parameter_axis = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
    last_steps = {}
    for method, (loss_csv, _) in runs.items():
        losses = pd.read_csv(loss_csv)
        window = max(1, int((losses["epoch"] == 1).sum()))
        loss_axis.plot(losses["step"], losses["loss"].rolling(window, min_periods=1).mean(), label=method)
        parameters = parameters_over_steps(histories[method])
        last_step = last_steps[method] = int(losses["step"].max()) if len(losses) else int(parameters.index.max())
        steps = [*parameters.index, last_step]
        parameter_axis.step(steps, [*parameters.values, parameters.values[-1]], where="post", label=method)
    loss_axis.set(xlabel="optimizer step", ylabel="noise-prediction MSE (moving mean, 1 epoch)", title="Loss")
    parameter_axis.set(xlabel="optimizer step", ylabel="LoRA parameters (rank × (in + out))", title="Adapter size")
    parameter_axis.set_yscale("log")
    loss_axis.legend(fontsize=8)
    parameter_axis.legend(fontsize=8)
    for index, method in enumerate(growing):
        axis = figure.add_subplot(grid[1 + index // 2, index % 2])
        ranks = ranks_over_steps(histories[method])
        # Columns are the steps at which some rank changed; each holds until the next one, the last until the end.
        step_edges = [*ranks.columns, max(last_steps[method], int(ranks.columns.max()) + 1)]
        image = axis.pcolormesh(step_edges, np.arange(len(ranks) + 1), ranks.to_numpy(), cmap="viridis")
        axis.invert_yaxis()
        axis.set(xlabel="optimizer step", ylabel=f"layer (of {len(ranks)}: text encoder, then UNet)",
                 title=f"{method}: rank per layer")
        figure.colorbar(image, ax=axis, label="rank")
    figure.suptitle(title)
    return figure


def plot_training_curves(runs: dict[str, tuple[Path, Path]], title: str, figure_png: Path) -> None:
    training_curves_figure(runs, title).savefig(figure_png, dpi=110)
