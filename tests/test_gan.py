"""The CPU GAN baseline: shapes, the translation augmentation, conditioning that is learnt, seeded sampling."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from migros.gan.conditional import (
    Discriminator, GanSettings, Generator, base_size, generate_gan_images, mode_seeking_ratio, run_gan_stage, train_gan,
    translate, widths,
)
from migros.report.metrics import TRAINING_METRICS, summary_rows

pytestmark = pytest.mark.usefixtures("single_thread")

SETTINGS = GanSettings(steps=300, batch_size=16, learning_rate=2e-3, adam_betas=(0.0, 0.99), latent_dim=16,
                       channels=8, ema_decay=0.9, translation=0.125, mode_seeking=1.0, seed=0)


def toy_set(size: int = 16, count: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1: a bright disc at a random place; class 0: a dark field; both with noise, in [-1, 1]."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:size, 0:size]
    images, labels = [], []
    for index in range(count):
        label = index % 2
        image = np.full((size, size), -0.8) + rng.normal(0, 0.05, (size, size))
        if label:
            centre = rng.uniform(5, size - 5, 2)
            image[(rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= 9] = 0.8
        images.append(image)
        labels.append(label)
    return torch.tensor(np.stack(images), dtype=torch.float32).unsqueeze(1).clamp(-1, 1), torch.tensor(labels)


def test_widths_double_towards_the_base_size_which_any_even_size_has():
    assert base_size(64) == 4 and widths(64, 8) == [64, 64, 32, 16, 8]
    assert base_size(224) == 7 and widths(224, 8) == [64, 64, 64, 32, 16, 8]  # SD's 224 px: 7 → 224 in 5 doublings
    assert base_size(72) == 9 and widths(72, 8) == [64, 32, 16, 8]
    for size in (64, 224, 72):
        assert Generator(size, latent_dim=4, channels=2)(torch.randn(2, 4), torch.tensor([0, 1])).shape == (2, 1, size, size)
        assert Discriminator(size, channels=2)(torch.zeros(2, 1, size, size), torch.tensor([0, 1])).shape == (2,)
    with pytest.raises(ValueError, match="even image size"):
        base_size(63)


def test_networks_map_latents_to_images_and_images_to_scores():
    generator, discriminator = Generator(32, latent_dim=8, channels=4), Discriminator(32, channels=4)
    images = generator(torch.randn(5, 8), torch.tensor([0, 1, 0, 1, 1]))
    assert images.shape == (5, 1, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert discriminator(images, torch.tensor([0, 1, 0, 1, 1])).shape == (5,)


def test_mode_seeking_ratio_is_image_distance_over_noise_distance_of_the_pairs():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [1.0, 3.0]])  # pairs (0, 2) and (1, 3): |Δz| 1 and 1
    fake = torch.stack([torch.full((1, 2, 2), value) for value in (0.0, 0.5, 0.4, 0.5)])
    assert mode_seeking_ratio(fake, z).item() == pytest.approx((0.4 / 1.0 + 0.0 / 1.0) / 2)
    z.requires_grad_(True)
    assert mode_seeking_ratio(fake.expand(4, 1, 2, 2) * 0, z).item() == 0  # images that ignore the noise


def test_translation_shifts_content_fills_black_and_keeps_gradients():
    images = torch.zeros(3, 1, 16, 16, requires_grad=True)
    shifted = translate(images, 0.25, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    assert set(shifted.detach().unique().tolist()) <= {0.0, -1.0} and (shifted == -1).any()  # some black border
    shifted.sum().backward()
    assert images.grad is not None
    assert translate(images, 0.0, torch.Generator()) is images


def test_the_generator_learns_the_classes():
    images, labels = toy_set()
    generator, losses = train_gan(images, labels, SETTINGS)
    assert list(losses.columns) == ["step", "discriminator_loss", "generator_loss"] and len(losses) == SETTINGS.steps
    with torch.no_grad():
        z = torch.randn(64, SETTINGS.latent_dim, generator=torch.Generator().manual_seed(1))
        tumour = generator(z, torch.ones(64, dtype=torch.long))
        healthy = generator(z, torch.zeros(64, dtype=torch.long))
    # the tumour class has a bright disc: its share of bright pixels is far above the healthy class's
    bright = lambda batch: (batch > 0).float().mean().item()  # noqa: E731
    assert bright(tumour) > bright(healthy) + 0.03, (bright(tumour), bright(healthy))
    assert bright(healthy) < 0.02


def test_each_image_depends_on_its_seed_and_label_only(tmp_path):
    generator = Generator(16, latent_dim=8, channels=4).eval()
    prompts = pd.DataFrame({"index": range(4), "prompt": ["a", "b", "c", "d"], "label": [0, 1, 0, 1],
                            "seed": [10, 11, 12, 13]})
    everything = generate_gan_images(generator, prompts, tmp_path / "all", batch_size=4)
    alone = generate_gan_images(generator, prompts.iloc[[2]], tmp_path / "alone", batch_size=1)
    assert list(everything.columns) == ["file", "prompt", "label", "seed"] and len(everything) == 4
    first, single = Image.open(everything.file[2]), Image.open(alone.file[0])
    assert first.mode == "RGB" and first.size == (16, 16)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(single))
    assert not np.array_equal(np.asarray(Image.open(everything.file[0])), np.asarray(first))


def test_the_stage_writes_a_generated_set_and_a_summary_the_report_reads(tmp_path):
    """Training slices written by PIL as the slice stage writes them (grayscale PNGs), 16 px."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(6):
        path = tmp_path / f"slice_{index}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(path)
        rows.append({"image": str(path), "prompt": "p", "label": index % 2, "size": "", "position": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "train_prompts.csv", index=False)
    prompts = pd.DataFrame({"index": range(5), "prompt": ["h", "t", "h", "t", "h"], "label": [0, 1, 0, 1, 0],
                            "seed": [3, 4, 5, 6, 7]})
    prompts.to_csv(tmp_path / "generation_prompts.csv", index=False)
    settings = GanSettings.from_config({"steps": 3, "batch_size": 4, "learning_rate": 1e-3, "adam_betas": [0.0, 0.99],
                                        "latent_dim": 8, "channels": 2, "ema_decay": 0.9, "translation": 0.125,
                                        "mode_seeking": 1.0, "seed": 0})
    out = tmp_path / "out"
    run_gan_stage(tmp_path / "train_prompts.csv", tmp_path / "generation_prompts.csv", settings, image_size=16,
                  batch_size=2, images_dir=out / "images", manifest_csv=out / "manifest.csv",
                  generator_path=out / "generator.pt", loss_csv=out / "loss.csv", summary_json=out / "summary.json")
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest[["prompt", "label", "seed"]].to_dict("records") == prompts[["prompt", "label", "seed"]].to_dict("records")
    assert all(Image.open(path).size == (16, 16) for path in manifest.file)
    assert len(pd.read_csv(out / "loss.csv")) == 3
    reported = {row["metric"]: row["value"] for row in summary_rows("d", "cgan", out / "summary.json", TRAINING_METRICS)}
    generator = Generator(16, latent_dim=8, channels=2)
    generator.load_state_dict(torch.load(out / "generator.pt"))
    assert reported["steps"] == 3 and reported["training_seconds"] >= 0
    assert reported["trainable_parameters"] == (sum(p.numel() for p in generator.parameters())
                                               + sum(p.numel() for p in Discriminator(16, channels=2).parameters()))
