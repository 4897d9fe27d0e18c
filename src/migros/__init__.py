"""Adapting latent diffusion models to small MRI sets with LoRA and SeLoRA, and measuring what the synthetic
images are worth (FID, classifier gain)."""
