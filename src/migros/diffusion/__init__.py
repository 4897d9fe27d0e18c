"""Latent diffusion: base models (SD v1.5 offline, or the demo model pretrained here), fine-tuning, generation.

Kept free of imports so that light modules (e.g. sample_grid) load without torch and diffusers.
"""
