"""Benchmark (not a test): resources of the paper's methods at Stable Diffusion v1.5's geometry.

SD v1.5's exact architecture with random weights (speed and memory do not depend on the weights), the paper's
batch 3 and 224-px images (28x28 latents), every linear layer of the UNet and the text encoder adapted. Prints:
- trainable parameters of every paper method: LoRA r4 / r8, SeLoRA at each uniform rank (its real per-layer
  ranks are in each run's rank_history.csv, with the parameters of each layer);
- seconds per optimizer step (forward, backward, Adam) and per SeLoRA Fisher trial, and the peak memory of a
  training process;
- generation: seconds per UNet call at batch 2 (classifier-free guidance), per VAE decode, the derived seconds
  per image at the paper's 50 PNDM steps, and the peak memory of a generation process.
Each part runs in its own process so that its peak memory is its own. On CUDA, training uses fp16 autocast
(finetune.mixed_precision: auto) and generation fp16 weights, as the pipeline does, and peak CUDA memory is
checked against a T4's 16 GB.

    python tests/benchmarks/sd15_resources.py [--threads 2] [--steps 2]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from migros.adapters import build_adapter
from migros.devices import autocast_dtype, default_device, inference_dtype
from migros.diffusion.sd15_architecture import build_sd15_pipeline
from migros.tuners.selora import linear_module_names

BATCH, IMAGE_SIZE, PROMPT = 3, 224, "Brain MRI Flair, with medium tumour on the center"
PAPER_METHODS = {
    "lora_r4": {"kind": "lora", "rank": 4, "alpha": 4},
    "lora_r8": {"kind": "lora", "rank": 8, "alpha": 8},
    "selora (rank 1 at start)": {"kind": "selora", "threshold": 1.0, "expand_every": 1, "alpha": 1},
}
T4_MEMORY_GIB = 16


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(function, device: torch.device) -> float:
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def train_part(method_name: str, steps: int) -> dict:
    """Seconds per optimizer step (after one warm-up step) and, for SeLoRA, per Fisher trial."""
    device = default_device()
    precision = autocast_dtype(device, "auto")
    pipeline = build_sd15_pipeline().to(device)
    method = PAPER_METHODS[method_name]
    adapter = build_adapter(pipeline, method, seed=0, total_steps=steps)
    optimizer = torch.optim.Adam(adapter.trainable_parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    tokens = pipeline.tokenizer([PROMPT] * BATCH, padding="max_length", max_length=77, return_tensors="pt").input_ids.to(device)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(BATCH, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=generator).to(device)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = torch.randint(0, 1000, (BATCH,), generator=generator).to(device)

    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            hidden = pipeline.text_encoder(tokens)[0]
            prediction = pipeline.unet(latents, timesteps, encoder_hidden_states=hidden).sample
        return F.mse_loss(prediction.float(), noise)

    def optimizer_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss()).backward()
        scaler.step(optimizer)
        scaler.update()

    step_seconds, trial_seconds = [], []
    for step in range(steps + 1):
        seconds = timed(optimizer_step, device)
        if step:
            step_seconds.append(seconds)
        if method["kind"] == "selora":
            trial_seconds.append(timed(lambda: adapter.after_optimizer_step(step + 1, lambda: scaler.scale(loss()), optimizer), device))
    return {
        "method": method_name,
        "trainable_parameters": sum(p.numel() for p in adapter.trainable_parameters()),
        "seconds_per_step": sum(step_seconds) / len(step_seconds),
        "seconds_per_trial": sum(trial_seconds) / len(trial_seconds) if trial_seconds else None,
        "peak_gib": peak_memory_gib(device),
    }


def generate_part() -> dict:
    """One UNet call at batch 2 (the guided and the unguided half) and one VAE decode, as sampling runs them."""
    device = default_device()
    pipeline = build_sd15_pipeline().to(device, inference_dtype(device))
    dtype = pipeline.unet.dtype
    tokens = pipeline.tokenizer([PROMPT, ""], padding="max_length", max_length=77, return_tensors="pt").input_ids.to(device)
    latents = torch.randn(2, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8).to(device, dtype)
    with torch.no_grad():
        hidden = pipeline.text_encoder(tokens)[0]
        unet_call = lambda: pipeline.unet(latents, torch.tensor([500, 500], device=device), encoder_hidden_states=hidden)  # noqa: E731
        decode = lambda: pipeline.vae.decode(latents[:1] / pipeline.vae.config.scaling_factor)  # noqa: E731
        timed(unet_call, device)  # warm-up
        unet_seconds = min(timed(unet_call, device) for _ in range(2))
        decode_seconds = timed(decode, device)
    return {"seconds_per_unet_call": unet_seconds, "seconds_per_decode": decode_seconds, "peak_gib": peak_memory_gib(device)}


def lora_parameters_per_rank() -> int:
    """Σ (in + out) over every adapted linear layer: the parameters one rank adds to a uniform-rank adapter."""
    pipeline = build_sd15_pipeline()
    total = 0
    for model in (pipeline.unet, pipeline.text_encoder):
        for name in linear_module_names(model):
            layer = model.get_submodule(name)
            total += layer.in_features + layer.out_features
    return total


def run_part(arguments: list[str]) -> dict:
    output = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps per method, after one warm-up")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part:
        result = generate_part() if args.part == "generate" else train_part(args.part, args.steps)
        print(json.dumps(result))
        return
    device = default_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    precision = "fp16 autocast / fp16 weights" if device.type == "cuda" else "fp32"
    print(f"SD v1.5 architecture, {IMAGE_SIZE} px, batch {BATCH}, {precision}, on {name}")
    per_rank = lora_parameters_per_rank()
    print(f"\nparameters one rank adds across all adapted layers (UNet + text encoder): {per_rank:,}")
    print("SeLoRA at uniform rank r: " + ", ".join(f"r={r}: {r * per_rank:,}" for r in (1, 2, 4, 8, 16)))
    # SeLoRA runs a trial after every step at λ = 1, so every layer grows each time: its parameter count is that
    # of its final uniform rank (steps + 2, after the warm-up step's trial too).
    print("\n| method | trainable parameters at the end | s / optimizer step | s / Fisher trial | peak memory (GiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    peaks = {}
    for method_name in PAPER_METHODS:
        result = run_part(["--part", method_name, "--threads", str(args.threads), "--steps", str(args.steps)])
        trial = f"{result['seconds_per_trial']:.1f}" if result["seconds_per_trial"] is not None else "-"
        print(f"| {method_name} | {result['trainable_parameters']:,} | {result['seconds_per_step']:.1f} | {trial} "
              f"| {result['peak_gib']:.1f} |", flush=True)
        peaks[f"training {method_name}"] = result["peak_gib"]
    generation = run_part(["--part", "generate", "--threads", str(args.threads)])
    peaks["generation"] = generation["peak_gib"]
    per_image = 51 * generation["seconds_per_unet_call"] + generation["seconds_per_decode"]  # PNDM: 50 steps = 51 calls
    print(f"\ngeneration: {generation['seconds_per_unet_call']:.2f} s per UNet call (batch 2, guidance), "
          f"{generation['seconds_per_decode']:.2f} s per VAE decode; at 50 PNDM steps {per_image:.0f} s per image "
          f"(batch 1); peak memory {generation['peak_gib']:.1f} GiB")
    if device.type == "cuda":
        # A T4's 16 GB (15.0 GiB usable once the CUDA context is up) against the peak tensors allocated.
        too_big = [part for part, peak in peaks.items() if peak > 0.9 * T4_MEMORY_GIB * 1e9 / 2**30]
        print(f"T4 (16 GB): {'every part fits' if not too_big else 'too large: ' + ', '.join(too_big)}")

if __name__ == "__main__":
    main()
