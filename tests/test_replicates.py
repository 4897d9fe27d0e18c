"""Training replicates: each replicate's set scored on its own, then named and pooled with intervals that cover the
variance between training runs (migros.evaluation.replicates, migros.evaluation.classifier.paired_comparisons)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from migros.evaluation.classifier import paired_comparisons
from migros.evaluation.design import crossed_components, crossed_mean_test, crossed_minimum_detectable_difference
from migros.evaluation.replicates import base_method, pool_replicates, replicate_number, replicated_methods
from migros.evaluation.statistics import TIDY_COLUMNS


def test_set_names_give_their_method_and_replicate():
    assert (base_method("selora_l1.00@2"), replicate_number("selora_l1.00@2")) == ("selora_l1.00", 2)
    assert (base_method("selora_l1.00"), replicate_number("selora_l1.00")) == ("selora_l1.00", 0)
    assert replicated_methods(["cgan", "lora_r4", "lora_r4@2", "lora_r4@1", "synthetic_only:lora_r4@1",
                               "synthetic_only:lora_r4"]) == {
        "lora_r4": ["lora_r4", "lora_r4@1", "lora_r4@2"],
        "synthetic_only:lora_r4": ["synthetic_only:lora_r4", "synthetic_only:lora_r4@1"]}


def tidy(method, metric, value, half_width, n):
    return {"dataset": "brats", "method": method, "metric": metric, "value": value, "lower": value - half_width,
            "upper": value + half_width, "n": n}


def test_pooled_rows_are_the_mean_over_replicates_with_their_t_interval_and_both_spreads():
    fids = [100.0, 112.0, 106.0]
    rows = [tidy(name, "fid", fid, stats.norm.ppf(0.975) * 2.0, 200) for name, fid in zip(["lora_r4", "lora_r4@1", "lora_r4@2"], fids)]
    rows += [tidy("cgan", "fid", 90.0, 3.0, 200), tidy("lora_r4", "classifier_auc", 0.7, 0.1, 3),
             tidy("lora_r4@1", "classifier_auc", 0.7, 0.1, 3), tidy("lora_r4@2", "classifier_auc", 0.7, 0.1, 3)]
    pooled = pool_replicates(pd.DataFrame(rows, columns=TIDY_COLUMNS)).set_index(["method", "metric"])
    assert {"lora_r4@0", "lora_r4@1", "lora_r4@2", "cgan"} <= set(pooled.index.get_level_values("method"))
    assert pooled.loc[("lora_r4@0", "fid"), "value"] == 100.0  # the first replicate, named
    fid = pooled.loc[("lora_r4", "fid")]
    between_half = stats.t.ppf(0.975, 2) * np.std(fids, ddof=1) / np.sqrt(3)
    within_half = stats.norm.ppf(0.975) * 2.0  # each replicate's own interval: what they share
    assert fid.value == pytest.approx(106.0) and fid.n == 200
    assert fid.upper - fid.value == pytest.approx(np.hypot(between_half, within_half))
    assert pooled.loc[("lora_r4", "fid_between_replicate_sd"), "value"] == pytest.approx(6.0)
    assert pooled.loc[("lora_r4", "fid_within_replicate_se"), "value"] == pytest.approx(2.0)
    assert pooled.loc[("cgan", "fid"), "value"] == 90.0 and ("cgan", "fid_between_replicate_sd") not in pooled.index
    auc = pooled.loc[("lora_r4", "classifier_auc")]  # no spread between replicates: their own intervals remain
    assert auc.value == pytest.approx(0.7) and (auc.lower, auc.upper) == pytest.approx((0.6, 0.8))


def test_without_replicates_the_metrics_are_unchanged():
    metrics = pd.DataFrame([tidy("lora_r4", "fid", 100.0, 4.0, 200)], columns=TIDY_COLUMNS)
    pd.testing.assert_frame_equal(pool_replicates(metrics), metrics)


def per_seed_rows(auc_of: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"condition": condition, "seed": seed, "auc": auc, "accuracy": 0.5 + auc / 10, "n_train_real": 40,
             "n_train_synthetic": 0 if condition == "real" else 200, "optimizer_steps": 30}
            for condition, aucs in auc_of.items() for seed, auc in enumerate(aucs)]
    return pd.DataFrame(rows)


def test_replicates_are_compared_each_and_pooled_over_their_means():
    real = [0.70, 0.72, 0.68, 0.71]
    gains = {"": [0.05, 0.06, 0.04, 0.05], "@1": [0.00, 0.01, -0.01, 0.02], "@2": [0.03, 0.02, 0.05, 0.04]}
    per_seed = per_seed_rows({"real": real, **{f"real+lora_r4{suffix}": list(np.add(real, gain))
                                                for suffix, gain in gains.items()}, "real+cgan": [0.6] * 4})
    comparisons = paired_comparisons("brats", per_seed)
    auc = comparisons[comparisons.metric == "classifier_auc"].set_index(["method", "baseline"])
    assert {("lora_r4@0", "real_only"), ("lora_r4@1", "real_only"), ("lora_r4@2", "real_only")} <= set(auc.index)
    pooled = auc.loc[("lora_r4", "real_only")]
    differences = np.array(list(gains.values()))  # replicates × seeds, the same seeds in every replicate
    assert differences.shape == (3, 4)
    tested = crossed_mean_test(differences)
    assert pooled.difference == pytest.approx(differences.mean()) and pooled.n == 12
    assert (pooled.lower, pooled.upper, pooled.p_value) == pytest.approx(
        (tested["lower"], tested["upper"], tested["p_value"]))
    components = crossed_components(differences)
    assert (pooled.replicate_sd, pooled.seed_sd, pooled.residual_sd) == pytest.approx(np.sqrt(components))
    assert pooled.minimum_detectable == pytest.approx(crossed_minimum_detectable_difference(*components, 3, 4))
    # a method trained once beside one trained three times: its one run stands beside each replicate
    versus_cgan = auc.loc[("lora_r4", "cgan")]
    assert versus_cgan.difference == pytest.approx(np.mean(real) + differences.mean() - 0.6)
    assert np.isnan(auc.loc[("cgan", "real_only"), "replicate_sd"])


def test_the_report_shows_pooled_methods_with_both_spreads_and_plans_with_the_training_variance():
    from migros.report.tables import evidence_table, fid_table

    rows = [tidy("no_adaptation", "fid", 150.0, 4.0, 200), tidy("real_train", "fid", 60.0, 3.0, 40)]
    rows += [tidy(name, "fid", fid, 4.0, 200) for name, fid in (("lora_r4", 100.0), ("lora_r4@1", 112.0),
                                                                  ("lora_r4@2", 106.0))]
    real = [0.70, 0.72, 0.68, 0.71]
    gains = {"": [0.05, 0.06, 0.04, 0.05], "@1": [0.00, 0.01, -0.01, 0.02], "@2": [0.03, 0.02, 0.05, 0.04]}
    comparisons = paired_comparisons("brats", per_seed_rows({"real": real, **{
        f"real+lora_r4{suffix}": list(np.add(real, gain)) for suffix, gain in gains.items()}}))
    metrics = pool_replicates(pd.DataFrame(rows, columns=TIDY_COLUMNS))
    config = {"datasets": {"brats": {"root": "demo", "image_size": 64}}, "base_model": {"source": "demo"},
              "fid": {"reference_split": "test"}, "finetune": {"replicates": 3},
              "evidence": {"multiplicity": "holm", "planning_effect": 0.02}}
    weights = {"path": "inception.pt", "sha256": "ab" * 32, "official": False, "origin": "test"}
    fid_page = fid_table(metrics, config, weights)
    assert "lora_r4@" not in fid_page and "SD between replicates" in fid_page and "<td>6.0</td>" in fid_page
    evidence = evidence_table(metrics, comparisons, config)
    assert "lora_r4@" not in evidence and "pooled over its 3 training replicates" in evidence
    assert "auc: real+lora_r4 vs real only" in evidence and "<td>3 × 4</td>" in evidence
    assert "<td>unseen (one run)</td>" not in evidence  # the variance between training runs was seen
