"""The GAN baselines, trained instead of adapting the diffusion model: a small class-conditional GAN for the
CPU default (`kind: gan`). Each writes the same generated set (images/ + manifest.csv) as the diffusion methods."""

from migros.gan.conditional import GanSettings

GAN_KINDS = {"gan": GanSettings}  # kind: settings of its `methods` entry (without `kind`); common.smk lists the same

__all__ = ["GAN_KINDS", "GanSettings"]
