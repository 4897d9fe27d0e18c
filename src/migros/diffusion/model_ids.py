"""Hugging Face ids of the paper's base model (no imports: the report reads them too)."""

# Stable Diffusion v1.5. The paper names runwayml/stable-diffusion-v1-5, which RunwayML removed from the Hub in
# 2024; the same weights are maintained under this id, the one to download today.
SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_FORMER_ID = "runwayml/stable-diffusion-v1-5"
# Ids that name the same weights: a cache that holds either serves a config that names the other.
SAME_WEIGHTS = {SD15_ID: (SD15_FORMER_ID,), SD15_FORMER_ID: (SD15_ID,)}
