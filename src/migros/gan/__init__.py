"""Generative adversarial baselines: the official StyleGAN3 (GPU, paper scale) and a small conditional GAN (CPU)."""
