"""The one place that decides where torch work runs and in which precision: CUDA when present, the CPU otherwise."""

import torch

# finetune.mixed_precision, with the names diffusers' training scripts use; "auto" is fp16 on CUDA, none on the CPU.
MIXED_PRECISION = ("auto", "fp16", "bf16", "no")


class DeviceError(RuntimeError):
    """A precision or device that a setting asks for and this machine cannot honour."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """Weights of a sampling pipeline: fp16 on CUDA (half the memory and time of a T4), fp32 on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


def autocast_dtype(device: torch.device, mixed_precision: str) -> torch.dtype | None:
    """The autocast dtype of training under `mixed_precision`; None trains in fp32.

    Weights and optimizer state stay fp32 either way; fp16 also needs a gradient scaler (the training loop adds
    one). A precision the device cannot honour is an error, never a silent change to another one.
    """
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
    if mixed_precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if mixed_precision == "no":
        return None
    if mixed_precision == "fp16":
        if device.type != "cuda":
            raise DeviceError(
                f"finetune.mixed_precision: fp16 needs a CUDA GPU, and this job runs on the {device.type}; "
                "use bf16 (CPU autocast) or no (fp32), or auto"
            )
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise DeviceError(
            f"finetune.mixed_precision: bf16 is not supported natively by {torch.cuda.get_device_name(device)} "
            "(e.g. a T4); use fp16 or auto"
        )
    return torch.bfloat16
