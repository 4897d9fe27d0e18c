"""Dataset overview for the report: example slices with lesion outlines, label balance, excluded cases."""

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from migros.data.shortcuts import statistic_aucs
from migros.data.slices import skipped_check_counts, split_counts
from migros.images import read_gray

EXAMPLES_PER_CLASS = 6


def overview_figure(metadata: pd.DataFrame, dataset: str) -> Figure:
    """Example training slices per class (tumour slices with their lesion outline) and cases per split and label."""
    train = metadata[metadata.split == "train"]
    figure = Figure(figsize=(2.2 * (EXAMPLES_PER_CLASS + 1), 4.8))
    axes = figure.subplots(2, EXAMPLES_PER_CLASS + 1)
    for row, (label, name) in enumerate(((1, "tumour"), (0, "healthy"))):
        examples = train[train.label == label].head(EXAMPLES_PER_CLASS)
        for column, axis in enumerate(axes[row, :EXAMPLES_PER_CLASS]):
            axis.axis("off")
            if column >= len(examples):
                continue
            case = examples.iloc[column]
            axis.imshow(read_gray(case["image"]), cmap="gray", vmin=0, vmax=1)
            if label:
                axis.contour(read_gray(case["mask"]) > 0.5, levels=[0.5], colors="red", linewidths=0.8)
            axis.set_title(f"{name}\n{case['case']}", fontsize=7)
    counts = metadata.groupby(["split", "label"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    balance = axes[0, -1]
    counts.rename(columns={0: "healthy", 1: "tumour"}).plot.bar(ax=balance, color=["#4c72b0", "#c44e52"], rot=0)
    balance.set_title("cases per split", fontsize=8)
    balance.legend(fontsize=7)
    axes[1, -1].axis("off")
    figure.suptitle(f"{dataset}: training slices (red: lesion outline)", fontsize=10)
    figure.tight_layout()
    return figure


def summary_html(metadata: pd.DataFrame, excluded: pd.DataFrame, dataset: str) -> str:
    counts = pd.crosstab(metadata.split, metadata.label.map({0: "healthy", 1: "tumour"}), margins=True, margins_name="all")
    reasons = excluded.groupby("reason").size().rename("cases").to_frame()
    skipped = skipped_check_counts(metadata)
    aucs = statistic_aucs([read_gray(path) for path in metadata.image], metadata.label.tolist())
    parts = [
        f"<h3>{dataset}: usable cases by split and label</h3>",
        counts.to_html(),
        "<h3>Patients and studies per split</h3><p>All studies of a patient are in one split, so no patient is in "
        "both train and test.</p>",
        split_counts(metadata).to_html(),
        "<h3>Checks skipped</h3>",
        (
            "<p>These checks need an optional file or setting that is absent; the cases were kept without them.</p>"
            + skipped.to_frame().rename_axis("check skipped").to_html()
        ) if len(skipped) else "<p>none: every check ran on every usable case</p>",
        "<h3>Shortcut check</h3><p>ROC AUC of single global intensity statistics of a slice as a tumour score "
        "(0.5: no information, 1: the statistic alone gives the label away). Values near 1 mean a classifier "
        "could score well without looking at the lesion.</p>",
        aucs.to_frame().T.to_html(float_format="%.2f", index=False),
        f"<h3>Excluded cases ({len(excluded)})</h3>",
        reasons.to_html() if len(excluded) else "<p>none</p>",
    ]
    if len(excluded):
        parts += ["<h4>Every excluded case</h4>", excluded[["case", "reason", "source_file"]].to_html(index=False)]
    style = "<style>body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 8px}</style>"
    return f"<html><head><meta charset='utf-8'>{style}</head><body>{''.join(parts)}</body></html>"


def write_overview(metadata_csv: Path, excluded_csv: Path, figure_png: Path, summary_path: Path, dataset: str) -> None:
    metadata = pd.read_csv(metadata_csv)
    excluded = pd.read_csv(excluded_csv)
    overview_figure(metadata, dataset).savefig(figure_png, dpi=110)
    summary_path.write_text(summary_html(metadata, excluded, dataset))
