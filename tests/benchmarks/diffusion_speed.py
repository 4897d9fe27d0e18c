"""Benchmark (not a test): fine-tuning step time of SeLoRA vs peft LoRA at equal rank, batched vs per-image
generation speed, and peak memory, on the demo model architecture (weights do not matter for speed).

    python tests/benchmarks/diffusion_speed.py [--rank 4] [--steps 30] [--images 64] [--threads 2]
"""

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from migros.adapters import build_adapter
from migros.devices import default_device
from migros.diffusion.demo.architecture import build_demo_pipeline
from migros.diffusion.generate import generate_images, use_scheduler

IMAGE_SIZE = 64
BATCH = 4


def step_times(method: dict, steps: int, device: torch.device) -> list[float]:
    """Seconds per optimizer step (forward, backward, Adam) on random latents, after two warm-up steps."""
    pipeline = build_demo_pipeline(image_size=IMAGE_SIZE).to(device)
    adapter = build_adapter(pipeline, method, seed=0, total_steps=steps)
    optimizer = torch.optim.Adam(adapter.trainable_parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    tokens = pipeline.tokenizer(["Brain MRI Flair, healthy"] * BATCH, padding="max_length", max_length=77, return_tensors="pt").input_ids.to(device)
    latents = torch.randn(BATCH, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=generator).to(device)
    timesteps = torch.randint(0, 1000, (BATCH,), generator=generator).to(device)

    def compute_loss() -> torch.Tensor:
        hidden = pipeline.text_encoder(tokens)[0]
        return F.mse_loss(pipeline.unet(latents, timesteps, encoder_hidden_states=hidden).sample, latents)

    times = []
    for step in range(1, steps + 3):
        started = time.perf_counter()
        loss = compute_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        del loss
        adapter.after_optimizer_step(step, compute_loss, optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 2:
            times.append(time.perf_counter() - started)
    return times


def generation_speed(n_images: int, batch_size: int, steps: int, device: torch.device) -> float:
    pipeline = build_demo_pipeline(image_size=IMAGE_SIZE).to(device)
    use_scheduler(pipeline, "ddim")
    prompts = pd.DataFrame({"index": range(n_images), "prompt": "Brain MRI Flair, healthy", "label": 0, "seed": range(n_images)})
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate_images(pipeline, prompts, Path(folder), IMAGE_SIZE, steps, 5.0, batch_size)
        return n_images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--inference-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = default_device()
    print(f"device {device}, {args.threads} threads, demo architecture at {IMAGE_SIZE} px, batch {BATCH}")

    lora = {"kind": "lora", "rank": args.rank, "alpha": args.rank}
    # SeLoRA held at the same rank (no trial passes), then with its trials every 20 steps (amortised cost)
    selora_fixed = {"kind": "selora", "threshold": 1e9, "expand_every": 10**6, "init_rank": args.rank, "max_rank": args.rank, "alpha": 1}
    selora_trials = {**selora_fixed, "expand_every": 20}
    medians = {}
    for name, method in (("peft LoRA", lora), ("SeLoRA, no trials", selora_fixed), ("SeLoRA, trial every 20 steps", selora_trials)):
        times = step_times(method, args.steps, device)
        medians[name] = statistics.median(times)
        mean = statistics.fmean(times)
        print(f"{name:32s} rank {args.rank}: median {1000 * medians[name]:.1f} ms/step, mean {1000 * mean:.1f} ms/step")
    print(f"SeLoRA / peft LoRA step time (median, equal rank): {medians['SeLoRA, no trials'] / medians['peft LoRA']:.3f} (goal <= 1.05)")

    batched = generation_speed(args.images, args.images, args.inference_steps, device)
    single = generation_speed(max(4, args.images // 8), 1, args.inference_steps, device)
    print(f"generation, {args.inference_steps} DDIM steps, CFG: batched {batched:.2f} images/s, one pipe() call per image {single:.2f} images/s, speed-up x{batched / single:.1f}")
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MiB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
