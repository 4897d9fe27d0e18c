"""The demo base model: a small model with SD v1.5's architecture, pretrained here because no SD weights ship.

It has SD's classes (AutoencoderKL with SD's 8x geometry or, as an option, 4x, UNet2DConditionModel with cross-attention,
CLIPTextModel with the real CLIP tokenizer, SD's noise schedule) and is pretrained on a generic MRI corpus in a
few CPU minutes; the fine-tuning code then treats it exactly as it would treat SD v1.5. `architecture` builds
it, `corpus` draws its training images, `pretraining` trains and saves it.
"""
