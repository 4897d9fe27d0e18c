"""Latent diffusion: base models (SD v1.5 offline, or the demo model pretrained here), fine-tuning, generation.

Kept free of imports so that importing one module does not load torch and diffusers for the others.
"""
