"""The membership-inference audit: its metrics, its choice of members and non-members, and a planted memoriser."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from figure_checks import drawn_fraction
from migros.evaluation.membership import (
    AuditError, AuditSettings, attack_rows, denoising_losses, nearest_distances, roc_auc, select_members, tpr_at_fpr,
)
from migros.prompts import PromptSettings
from migros.report.privacy_figure import FIGURE_SCORES, figure_role, plot_privacy_figure, privacy_figure

PROMPTS = PromptSettings.from_config({"positive": "tumour {size}", "negative": "healthy",
                                      "size_thresholds": {"small_below": 0.01, "large_from": 0.05}})
AUDIT = AuditSettings.from_config({"timesteps": [100, 300, 500, 700, 900], "noise_draws": 2, "batch_size": 8,
                                   "seed": 0, "bootstrap_resamples": 200})


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


def slice_metadata(tmp_path, n_train=8, n_test=6):
    rows = []
    for split, count in (("train", n_train), ("test", n_test)):
        for index in range(count):
            label = index % 2 if split == "train" else int(index < 2)  # test: 2 tumour, 4 healthy
            rows.append({"case": f"{split}{index // 2}", "image": str(tmp_path / f"{split}{index}.png"),
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
    shared_patient = metadata.copy()
    shared_patient.loc[shared_patient.image.str.endswith("test0.png"), "case"] = "train0"
    with pytest.raises(AuditError, match="train0"):
        select_members(shared_patient[shared_patient.split == "train"].assign(prompt="p"), shared_patient, PROMPTS, 0)


def test_distance_attack_gives_an_exact_copy_the_highest_score():
    generator = np.random.default_rng(1)
    audited = generator.random((6, 8, 8)).astype(np.float32)
    generated = np.concatenate([generator.random((20, 8, 8)), audited[2:3]]).astype(np.float32)
    distances = nearest_distances(audited, generated)
    assert distances[2] == pytest.approx(0, abs=1e-5) and np.argmin(distances) == 2
    assert (np.delete(distances, 2) > 1).all()


SIZE = 32


def smooth_images(folder, count, seed):
    """Low-frequency random images (4×4 upsampled): content the small VAE keeps apart."""
    generator = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"{seed}_{index}.png"
        Image.fromarray(generator.integers(0, 255, (4, 4), dtype=np.uint8)).resize(
            (SIZE, SIZE), Image.Resampling.BICUBIC).save(path)
        paths.append(str(path))
    return paths


def test_a_memorising_model_is_caught_and_the_base_model_is_not(tmp_path):
    """A planted memoriser: the demo UNet trained to far past convergence on 4 slices (all weights: a LoRA on the
    random demo model does not memorise in a test-length run). Its loss-difference AUC against 4 non-members from
    the same distribution is near 1; the base model's loss attack is at chance."""
    from diffusers import DDPMScheduler

    from migros.diffusion.demo.architecture import build_demo_pipeline
    from migros.diffusion.finetune import encode_latent_distribution, encode_prompts, load_images

    torch.set_num_threads(1)
    prompts = ["Brain MRI, healthy", "Brain MRI, tumour"] * 2
    members, non_members = smooth_images(tmp_path, 4, 0), smooth_images(tmp_path, 4, 1)
    pipeline = build_demo_pipeline(image_size=SIZE, vae_channels=(8, 8, 16, 16), unet_channels=(16, 32),
                                   text_hidden_size=32, norm_groups=4, seed=0)
    member_images, non_member_images = load_images(members, SIZE), load_images(non_members, SIZE)
    # The untrained demo VAE's latents barely vary; scale them to unit spread, as pretraining's scaling factor does.
    means, _ = encode_latent_distribution(pipeline, torch.cat([member_images, non_member_images]))
    pipeline.vae.register_to_config(scaling_factor=float(1 / means.std()))

    def losses():
        return (denoising_losses(pipeline, member_images, prompts, "member", AUDIT),
                denoising_losses(pipeline, non_member_images, prompts, "non_member", AUDIT))

    base_members, base_non_members = losses()
    assert roc_auc(-base_members, -base_non_members) == pytest.approx(0.5, abs=0.35)
    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    latents = encode_latent_distribution(pipeline, member_images)[0] * pipeline.vae.config.scaling_factor
    hidden = pipeline.text_encoder(encode_prompts(pipeline, prompts))[0].detach()
    optimizer = torch.optim.Adam(pipeline.unet.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    pipeline.unet.train()
    for _ in range(250):
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (len(latents),), generator=generator)
        prediction = pipeline.unet(scheduler.add_noise(latents, noise, timesteps), timesteps, hidden).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pipeline.unet.eval()
    adapted_members, adapted_non_members = losses()
    assert roc_auc(base_members - adapted_members, base_non_members - adapted_non_members) >= 0.9
    assert roc_auc(-adapted_members, -adapted_non_members) >= 0.9
    assert adapted_members.max() < base_members.min()  # it did fit its training slices


def test_denoising_losses_use_the_same_noise_for_the_same_image(tmp_path):
    from migros.diffusion.demo.architecture import build_demo_pipeline
    from migros.diffusion.finetune import load_images

    torch.set_num_threads(1)
    pipeline = build_demo_pipeline(image_size=SIZE, vae_channels=(8, 8, 16, 16), unet_channels=(16, 32),
                                   text_hidden_size=32, norm_groups=4, seed=0)
    images = load_images(smooth_images(tmp_path, 3, 0), SIZE)
    single = AuditSettings.from_config({**AUDIT.__dict__, "timesteps": [100, 900], "batch_size": 1})
    batched = AuditSettings.from_config({**AUDIT.__dict__, "timesteps": [100, 900], "batch_size": 3})
    first = denoising_losses(pipeline, images, ["a"] * 3, "member", single)
    np.testing.assert_allclose(first, denoising_losses(pipeline, images, ["a"] * 3, "member", batched), rtol=1e-5)
    assert not np.allclose(first, denoising_losses(pipeline, images, ["a"] * 3, "non_member", single))
    with pytest.raises(ValueError, match="timesteps"):
        denoising_losses(pipeline, images, ["a"] * 3, "member",
                         AuditSettings.from_config({**AUDIT.__dict__, "timesteps": [1000]}))


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
