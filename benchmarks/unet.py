"""Speed and memory of the 3D U-Net on this machine (CPU; and on a GPU when one is present).

Measurements, each in a fresh spawned process so that peak memory belongs to it alone:
  forward    the published network (14 filters, 4 levels, 7 classes) on one
             48 x 512 x 512 (ZYX) volume, no gradients: seconds and peak memory
             (resident set on CPU, torch's peak allocation on a GPU).
  train      optimiser steps (Adam, cross-entropy, forward + backward) of the small
             configuration on batches of 2 patches of 48^3, and of the published
             configuration on batches of 1 patch of --published-patch (default
             128 x 128 x 48, a sixteenth of a volume; pass 512,512,48 for whole volumes):
             patches per minute and the equivalent whole 48 x 512 x 512 volumes per minute.
Prints a table and writes JSON. Usage:

    .venv/bin/python benchmarks/unet.py [--threads N] [--steps 3] [--device cpu|cuda]
        [--published-patch 128,128,48] [--out benchmarks/results/unet.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLUME = (512, 512, 48)  # X, Y, Z: the published 48 x 512 x 512 (ZYX) input


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(threads, device):
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    return torch


def _peak_memory_mb(torch, device, rss_before):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return _peak_rss_mb() - rss_before


def forward(threads: int, device: str) -> dict:
    torch = _setup(threads, device)
    from cordmap.learn.model import PUBLISHED, UNet3D

    net = UNet3D(PUBLISHED).to(device).eval()
    x = torch.randn(1, 1, *VOLUME, device=device)
    rss_before = _peak_rss_mb()
    with torch.no_grad():
        if device.startswith("cuda"):
            net(x)  # warm-up (kernels, allocator)
            torch.cuda.synchronize()
        start = time.perf_counter()
        net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_memory_mb": _peak_memory_mb(torch, device, rss_before)}


def train_steps(config_name: str, patch, batch: int, steps: int, threads: int, device: str) -> dict:
    torch = _setup(threads, device)
    from dataclasses import replace

    from cordmap.learn.model import CONFIGS, UNet3D

    config = replace(CONFIGS[config_name], patch=tuple(patch))
    net = UNet3D(config).to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=1.2e-3)
    x = torch.randn(batch, 1, *patch, device=device)
    y = torch.randint(0, config.classes, (batch, *patch), device=device)
    rss_before = _peak_rss_mb()

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    patches_per_minute = 60 * batch / seconds
    voxels = patch[0] * patch[1] * patch[2]
    return {
        "config": config_name,
        "patch": list(patch),
        "batch": batch,
        "seconds_per_step": seconds,
        "patches_per_minute": patches_per_minute,
        "volumes_per_minute": patches_per_minute * voxels / (VOLUME[0] * VOLUME[1] * VOLUME[2]),
        "peak_memory_mb": _peak_memory_mb(torch, device, rss_before),
    }


def _isolated(function, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--published-patch", default="128,128,48")
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "unet.json")
    args = parser.parse_args()
    published_patch = tuple(int(v) for v in args.published_patch.split(","))

    results = {
        "device": args.device,
        "threads": args.threads or os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
    }
    if not args.skip_forward:
        results["forward_published_48x512x512"] = _isolated(forward, args.threads, args.device)
    results["train"] = [
        _isolated(train_steps, "small", (48, 48, 48), 2, args.steps, args.threads, args.device),
        _isolated(
            train_steps, "published", published_patch, 1, args.steps, args.threads, args.device
        ),
    ]
    results["load_average_at_end"] = os.getloadavg()
    _print(results)
    from cordmap.atomic import write_text

    write_text(args.out, json.dumps(results, indent=1) + "\n")
    print(f"written {args.out}")


def _print(results):
    if "forward_published_48x512x512" in results:
        f = results["forward_published_48x512x512"]
        print(
            f"forward, published, one 48x512x512 volume on {results['device']}: "
            f"{f['seconds']:.1f} s, peak {f['peak_memory_mb']:.0f} MB"
        )
    print(
        f"{'config':<10} {'patch':>12} {'batch':>5} {'s/step':>8} {'patches/min':>12} "
        f"{'volumes/min':>12} {'peak MB':>8}"
    )
    for r in results["train"]:
        print(
            f"{r['config']:<10} {'x'.join(map(str, r['patch'])):>12} {r['batch']:>5} "
            f"{r['seconds_per_step']:>8.2f} {r['patches_per_minute']:>12.1f} "
            f"{r['volumes_per_minute']:>12.3f} {r['peak_memory_mb']:>8.0f}"
        )
    print(
        f"load average at start {results['load_average_at_start']}, "
        f"at end {results['load_average_at_end']}"
    )


if __name__ == "__main__":
    main()
