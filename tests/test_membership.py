"""The membership-inference audit: its metrics, its choice of members and non-members, the learned attack, and a
planted memoriser."""

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from figure_checks import drawn_fraction
from migros.evaluation.learned_attack import learned_attack_scores
from migros.evaluation.membership import (
    AuditError, AuditSettings, attack_rows, check_auxiliary, denoising_losses, nearest_distances, roc_auc,
    run_audit_stage, select_auxiliary, select_members, tpr_at_fpr,
)
from migros.prompts import PromptSettings
from migros.report.privacy_figure import FIGURE_SCORES, figure_role, plot_privacy_figure, privacy_figure
from planted_audit import PROMPTS as PLANTED_PROMPTS, SIZE, smooth_images, tiny_pipeline, train_unet

PROMPTS = PromptSettings.from_config({"positive": "tumour {size}", "negative": "healthy",
                                      "size_thresholds": {"small_below": 0.01, "large_from": 0.05}})
LEARNED = {"map_size": 4, "hidden": [32], "dropout": 0.0, "steps": 200, "learning_rate": 1e-3, "weight_decay": 1e-2,
           "folds": 4}
AUDIT = AuditSettings.from_config({"timesteps": [100, 300, 500, 700, 900], "noise_draws": 2, "batch_size": 8,
                                   "seed": 0, "bootstrap_resamples": 200, "learned_attack": LEARNED})


def test_separated_scores_give_auc_1_and_full_tpr():
    members, non_members = np.arange(10, 20.0), np.arange(10.0)
    assert roc_auc(members, non_members) == 1.0
    assert tpr_at_fpr(members, non_members, 0.01) == 1.0
    rows = pd.DataFrame(attack_rows("d", "m", "loss", members, non_members, 100, 0)).set_index("metric")
    assert (rows.value == 1.0).all() and (rows.lower == 1.0).all() and (rows.n == 20).all()


def test_identical_distributions_give_auc_near_one_half_inside_the_interval():
    generator = np.random.default_rng(0)
    members, non_members = generator.normal(size=400), generator.normal(size=400)
    rows = pd.DataFrame(attack_rows("d", "m", "loss", members, non_members, 300, 0)).set_index("metric")
    auc = rows.loc["mi_loss_auc"]
    assert auc.value == pytest.approx(0.5, abs=0.05) and auc.lower <= auc.value <= auc.upper
    assert auc.lower < 0.5 < auc.upper
    assert rows.loc["mi_loss_tpr_at_10pct_fpr"].value == pytest.approx(0.1, abs=0.05)


def test_the_lowest_fpr_row_allows_one_false_positive_whatever_the_number_of_non_members():
    """With 40 non-members "1 % FPR" is FPR 0; the audit reports the TPR at the lowest FPR the sample shows,
    1/40, and names it so."""
    non_members = np.arange(40.0)  # one false positive allowed: the threshold lies above 38
    members = np.array([50, 45, 39.5, 38.5, 30, 20, 10, 5, 1, 0.5])
    rows = pd.DataFrame(attack_rows("d", "m", "loss", members, non_members, 50, 0)).set_index("metric")
    assert set(rows.index) == {"mi_loss_auc", "mi_loss_tpr_at_lowest_fpr", "mi_loss_tpr_at_10pct_fpr"}
    assert rows.loc["mi_loss_tpr_at_lowest_fpr"].value == 0.4  # 50, 45, 39.5 and 38.5: only 39 is above 38.5
    assert rows.loc["mi_loss_tpr_at_10pct_fpr"].value == 0.4  # four false positives (39..36) allowed: 35.5 and up
    eighty = pd.DataFrame(attack_rows("d", "m", "loss", members, np.arange(0, 40, 0.5), 0, 0)).set_index("metric")
    assert eighty.loc["mi_loss_tpr_at_lowest_fpr"].value == 0.3  # 1/80: above 39, the second non-member, not 38.5


def test_tpr_at_low_fpr_counts_members_above_the_top_non_members():
    non_members = np.arange(100.0)  # at 1 % FPR one non-member (99) may lie above the threshold, at 2 % two
    members = np.array([150, 140, 98.5, 97.5, 50, 10, 5, 1, 0.5, 0.2])
    assert tpr_at_fpr(members, non_members, 0.0) == 0.2  # above 99: 150 and 140
    assert tpr_at_fpr(members, non_members, 0.01) == 0.3  # at 98.5 and above: 99 is the one false positive
    assert tpr_at_fpr(members, non_members, 0.02) == 0.4  # at 97.5 and above: 99 and 98


def test_auc_and_tpr_equal_sklearns_with_ties():
    from sklearn.metrics import roc_auc_score, roc_curve

    generator = np.random.default_rng(3)
    for _ in range(20):
        members, non_members = generator.integers(0, 8, 30).astype(float), generator.integers(0, 7, 50).astype(float)
        labels, scores = np.r_[np.ones(30), np.zeros(50)], np.r_[members, non_members]
        assert roc_auc(members, non_members) == pytest.approx(roc_auc_score(labels, scores))
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
        for target in (0.0, 0.01, 0.1, 0.5):
            assert tpr_at_fpr(members, non_members, target) == pytest.approx(tpr[fpr <= target + 1e-12].max())


def slice_metadata(tmp_path, n_train=8, n_test=6, n_unused=0):
    """Two slices per case (a study), one case per patient; unused: alternating labels."""
    rows = []
    for split, count in (("train", n_train), ("test", n_test), ("unused", n_unused)):
        for index in range(count):
            label = int(index < 2) if split == "test" else index % 2  # test: 2 tumour, 4 healthy
            case = f"{split}{index // 2}"
            rows.append({"case": case, "patient": f"p_{case}", "image": str(tmp_path / f"{split}{index}.png"),
                         "mask": "", "split": split, "label": label, "lesion_area_fraction": 0.03 * label})
    return pd.DataFrame(rows)


def test_members_and_non_members_are_equal_in_number_and_class_balance(tmp_path):
    metadata = slice_metadata(tmp_path)
    train = metadata[metadata.split == "train"].assign(prompt="p")
    members, non_members = select_members(train, metadata, PROMPTS, seed=0)
    assert len(members) == len(non_members) == 6
    assert members.label.value_counts().to_dict() == non_members.label.value_counts().to_dict() == {0: 4, 1: 2}
    assert set(members.image) <= set(train.image) and set(non_members.image) <= set(metadata[metadata.split == "test"].image)
    assert set(non_members.prompt) == {"healthy", "tumour medium"}  # built like the training prompts
    again = select_members(train, metadata, PROMPTS, seed=0)
    assert again[0].equals(members) and again[1].equals(non_members)  # seeded: the same for every method


def test_a_test_slice_among_the_members_voids_the_audit(tmp_path):
    metadata = slice_metadata(tmp_path)
    leaked = metadata[metadata.split == "test"].head(1).assign(prompt="p")
    with pytest.raises(AuditError, match="not training slices"):
        select_members(pd.concat([metadata[metadata.split == "train"].assign(prompt="p"), leaked]), metadata,
                       PROMPTS, 0)


def test_a_patient_with_studies_on_both_sides_voids_the_audit(tmp_path):
    """PI-CAI: one patient, two studies (two cases), one study's slice a member and the other's a non-member."""
    metadata = slice_metadata(tmp_path)
    metadata.loc[metadata.case == "test0", "patient"] = "p_train0"  # the case (study) stays its own
    assert metadata.case.nunique() == 7 and metadata.patient.nunique() == 6
    with pytest.raises(AuditError, match="p_train0"):
        select_members(metadata[metadata.split == "train"].assign(prompt="p"), metadata, PROMPTS, 0)


def test_the_learned_attack_trains_on_unused_slices_of_other_patients_only(tmp_path):
    metadata = slice_metadata(tmp_path, n_unused=6)
    unused = metadata[metadata.split == "unused"].assign(prompt="p")
    check_auxiliary(unused, metadata)
    with pytest.raises(AuditError, match="test1.png"):  # an audited non-member
        check_auxiliary(pd.concat([unused, metadata[metadata.image.str.endswith("test1.png")]]), metadata)
    shared = metadata.copy()
    shared.loc[shared.image.str.endswith("unused4.png"), "patient"] = "p_test0"
    with pytest.raises(AuditError, match="p_test0"):
        check_auxiliary(unused, shared)
    members = pd.DataFrame({"image": ["a", "b", "c"], "prompt": "p", "label": [0, 0, 1]})
    chosen = select_auxiliary(unused, members, seed=0)
    assert chosen.label.value_counts().to_dict() == {0: 2, 1: 1}  # at most the members' count of each class
    assert set(chosen.image) <= set(unused.image) and chosen.equals(select_auxiliary(unused, members, seed=0))


def loss_maps(generator, count, shift=0.0):
    """(count, 2 timesteps, 4 channels, 4, 4) positive maps; `shift` lowers the first half of every map's
    elements and raises the second by as much in log space, which leaves the mean about where it was."""
    logs = generator.normal(0.0, 0.3, (count, 2, 4, 4, 4))
    logs[:, :, :2] -= shift
    logs[:, :, 2:] += np.log(2 - np.exp(-shift))  # e^-s + (2 - e^-s) = 2: the same mean factor
    return np.exp(logs)


def test_the_learned_attack_reads_a_pattern_that_the_mean_loss_hides():
    generator = np.random.default_rng(0)
    members, non_members, auxiliary = loss_maps(generator, 60, 0.5), loss_maps(generator, 60), loss_maps(generator, 60)
    labels = np.arange(60) % 2
    settings = AUDIT.learned_attack
    member_scores, non_member_scores = learned_attack_scores(members, labels, non_members, labels, auxiliary,
                                                             settings, seed=0)
    mean_loss_auc = roc_auc(-members.mean(axis=(1, 2, 3, 4)), -non_members.mean(axis=(1, 2, 3, 4)))
    assert abs(mean_loss_auc - 0.5) < 0.15
    assert roc_auc(member_scores, non_member_scores) > 0.95


def test_the_learned_attack_is_at_chance_when_members_are_like_the_others():
    """Cross-fitting: no member is scored by an MLP that trained on it. One that had would recognise its own
    training points (an MLP on 128 numbers remembers 80 of them) and call members members."""
    generator = np.random.default_rng(1)
    members, non_members, auxiliary = (loss_maps(generator, 80) for _ in range(3))
    labels = np.arange(80) % 2
    scores = learned_attack_scores(members, labels, non_members, labels, auxiliary, AUDIT.learned_attack, seed=0)
    assert abs(roc_auc(*scores) - 0.5) < 0.12
    with pytest.raises(ValueError, match="folds"):
        learned_attack_scores(members[:3], labels[:3], non_members, labels, auxiliary, AUDIT.learned_attack, seed=0)


def test_distance_attack_gives_an_exact_copy_the_highest_score():
    generator = np.random.default_rng(1)
    audited = generator.random((6, 8, 8)).astype(np.float32)
    generated = np.concatenate([generator.random((20, 8, 8)), audited[2:3]]).astype(np.float32)
    distances = nearest_distances(audited, generated)
    assert distances[2] == pytest.approx(0, abs=1e-5) and np.argmin(distances) == 2
    assert (np.delete(distances, 2) > 1).all()


def test_a_memorising_model_is_caught_and_the_base_model_is_not(tmp_path):
    """A planted memoriser: the demo UNet trained to far past convergence on 4 slices (all weights: a LoRA on the
    random demo model does not memorise in a test-length run). Its loss-difference AUC against 4 non-members from
    the same distribution is near 1; the base model's loss attack is at chance."""
    from migros.diffusion.finetune import load_images

    torch.set_num_threads(1)
    prompts = list(PLANTED_PROMPTS) * 2
    members, non_members = smooth_images(tmp_path, 4, 0), smooth_images(tmp_path, 4, 1)
    pipeline = tiny_pipeline(members + non_members)
    member_images, non_member_images = load_images(members, SIZE), load_images(non_members, SIZE)

    def losses():
        return (denoising_losses(pipeline, member_images, prompts, "member", AUDIT)[0],
                denoising_losses(pipeline, non_member_images, prompts, "non_member", AUDIT)[0])

    base_members, base_non_members = losses()
    assert roc_auc(-base_members, -base_non_members) == pytest.approx(0.5, abs=0.35)
    train_unet(pipeline, members, steps=250)
    adapted_members, adapted_non_members = losses()
    assert roc_auc(base_members - adapted_members, base_non_members - adapted_non_members) >= 0.9
    assert roc_auc(-adapted_members, -adapted_non_members) >= 0.9
    assert adapted_members.max() < base_members.min()  # it did fit its training slices


def test_the_stage_scores_every_denoising_method_with_the_learned_attack_and_a_gan_without(tmp_path):
    """The stage end to end on the tiny model, for no_adaptation (the base model is the audited one) and a GAN."""
    from migros.diffusion.base_model import BASE_MODEL_RECORD

    torch.set_num_threads(1)
    splits = {"train": smooth_images(tmp_path, 8, 0), "test": smooth_images(tmp_path, 8, 1),
              "unused": smooth_images(tmp_path, 8, 2)}
    metadata = pd.DataFrame([{"case": f"{split}{index}", "patient": f"p_{split}{index}", "image": image, "mask": "",
                              "split": split, "label": index % 2, "lesion_area_fraction": 0.03 * (index % 2)}
                             for split, images in splits.items() for index, image in enumerate(images)])
    metadata.to_csv(tmp_path / "metadata.csv", index=False)
    prompted = metadata.assign(prompt=np.where(metadata.label == 1, "tumour medium", "healthy"))
    prompted[prompted.split == "train"].to_csv(tmp_path / "train_prompts.csv", index=False)
    prompted[prompted.split == "unused"].to_csv(tmp_path / "auxiliary.csv", index=False)
    pd.DataFrame({"file": smooth_images(tmp_path, 4, 3)}).to_csv(tmp_path / "manifest.csv", index=False)
    tiny_pipeline(metadata.image.tolist()).save_pretrained(tmp_path / "base" / "pipeline")
    (tmp_path / "base" / BASE_MODEL_RECORD).write_text(json.dumps({"source": "pipeline", "relative_to_record": True}))

    def audit(method, kind, auxiliary):
        run_audit_stage(tmp_path / "base", None, tmp_path / "train_prompts.csv", tmp_path / "metadata.csv",
                        tmp_path / "manifest.csv", PROMPTS, AUDIT, SIZE, "d", method, kind, tmp_path / f"{method}.csv",
                        tmp_path / f"{method}_scores.csv", auxiliary_non_members_csv=auxiliary)
        return (pd.read_csv(tmp_path / f"{method}.csv").set_index("metric"),
                pd.read_csv(tmp_path / f"{method}_scores.csv"))

    rows, scores = audit("no_adaptation", None, tmp_path / "auxiliary.csv")
    statistics = ("auc", "tpr_at_lowest_fpr", "tpr_at_10pct_fpr")
    assert set(rows.index) == {f"mi_{attack}_{statistic}" for attack in ("loss", "learned", "distance")
                               for statistic in statistics}
    learned = rows.loc[[f"mi_learned_{statistic}" for statistic in statistics]]
    assert (learned.n == 16).all() and (learned.lower <= learned.value).all() and (learned.value <= learned.upper).all()
    assert scores.learned_score.notna().all() and len(scores) == 16
    with pytest.raises(ValueError, match="auxiliary non-members"):
        audit("no_adaptation", None, None)
    rows, scores = audit("cgan", "gan", None)  # no denoising loss: distance only, no auxiliary slices read
    assert set(rows.index) == {f"mi_distance_{statistic}" for statistic in statistics}
    assert scores.learned_score.isna().all()


def test_denoising_losses_use_the_same_noise_for_the_same_image(tmp_path):
    from migros.diffusion.finetune import load_images

    torch.set_num_threads(1)
    paths = smooth_images(tmp_path, 3, 0)
    pipeline = tiny_pipeline(paths)
    images = load_images(paths, SIZE)
    single = AuditSettings.from_config({**asdict(AUDIT), "timesteps": [100, 900], "batch_size": 1})
    batched = AuditSettings.from_config({**asdict(AUDIT), "timesteps": [100, 900], "batch_size": 3})
    first, first_maps = denoising_losses(pipeline, images, ["a"] * 3, "member", single)
    again, again_maps = denoising_losses(pipeline, images, ["a"] * 3, "member", batched)
    np.testing.assert_allclose(first, again, rtol=1e-5)
    np.testing.assert_allclose(first_maps, again_maps, rtol=1e-4)
    assert first_maps.shape == (3, 2, 4, 4, 4)  # timesteps, latent channels, the 4 x 4 latent (map_size 4)
    np.testing.assert_allclose(first_maps.mean(axis=(1, 2, 3, 4)), first, rtol=1e-5)  # pooling keeps the mean
    assert not np.allclose(first, denoising_losses(pipeline, images, ["a"] * 3, "non_member", single)[0])
    with pytest.raises(ValueError, match="timesteps"):
        denoising_losses(pipeline, images, ["a"] * 3, "member",
                         AuditSettings.from_config({**asdict(AUDIT), "timesteps": [1000]}))


def scores_csv(path, shift, with_losses=True):
    generator = np.random.default_rng(0)
    roles = ["member"] * 10 + ["non_member"] * 10
    adapted = np.r_[generator.normal(1 - shift, 0.05, 10), generator.normal(1, 0.05, 10)]
    frame = pd.DataFrame({"image": [f"{i}.png" for i in range(20)], "role": roles, "label": [0, 1] * 10,
                          "loss_adapted": adapted if with_losses else np.nan,
                          "loss_base": np.ones(20) if with_losses else np.nan,
                          "min_distance": generator.uniform(1, 2, 20)})
    frame.to_csv(path, index=False)
    return path


def test_privacy_figure_shows_members_against_non_members_per_method(tmp_path):
    runs = {"no_adaptation": (scores_csv(tmp_path / "base.csv", 0.0), None),
            "lora_r4": (scores_csv(tmp_path / "lora.csv", 0.3), "lora"),
            "cgan": (scores_csv(tmp_path / "cgan.csv", 0.0, with_losses=False), "gan")}
    figure = privacy_figure(runs, "brats")
    axes = figure.axes
    assert len(axes) == 3
    for axis, (method, (_, kind)) in zip(axes, runs.items()):
        assert method in axis.get_title() and FIGURE_SCORES[figure_role(kind)][1] == axis.get_xlabel()
        counts = [sum(patch.get_height() for patch in container) for container in axis.containers]
        assert counts == [10, 10]  # members, then non-members: every image drawn once
    assert "AUC 1.00" in axes[1].get_title()  # the adapter's members are separated by 0.3 loss
    plot_privacy_figure(runs, "brats", tmp_path / "figure.png")
    assert drawn_fraction(tmp_path / "figure.png") > 0.05
