"""Speed and memory of `cordmap segment` with the bundled model, against the previous
inference settings, in the same run.

Usage: .venv/bin/python benchmarks/segment_speed.py [--model FILE] [--rounds 2]

Images: an axial 512 x 512 x 48 phantom (0.5 mm pixels, 3 mm slices) and a real sagittal
lumbar scan (lumbar-mri vb2-07, 1 x 1 x 3 mm). Settings:
- baseline: the inference of the previous release (the windows through the network one
  at a time, `nn.InstanceNorm3d` layers);
- cordmap: today's defaults (`learn.infer`: windows of WINDOW_SCALE training patches,
  OVERLAP, the body's bounding box only, WINDOW_BATCH windows at a time; the instance
  norm as a group norm of one channel per group).
Each is timed `--rounds` times alternately (best kept); peak memory is the growth of the
process's resident set during one call (ru_maxrss, measured in a child process per setting).
Also the agreement of the two label maps (share of voxels with the same class).
Writes benchmarks/results/segment_speed.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

import numpy as np
import torch

from cordmap.anatomy.phantom import make_phantom
from cordmap.atomic import write_text
from cordmap.learn import infer
from cordmap.learn.bundled import model_path
from cordmap.learn.modelfile import load_model
from cordmap.learn.recipe import read_lumbar
from cordmap.protocol.schema import LabelSchema

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def images():
    phantom = make_phantom(1000, pixel_mm=0.5, fov_mm=(256.0, 256.0), n_slices=48)
    out = {"axial 512x512x48": phantom.image}
    if (DATA / "lumbar-mri").is_dir():
        out["sagittal lumbar vb2-07"] = read_lumbar(
            DATA / "lumbar-mri", "vb2-07", LabelSchema.load()
        )[0]
    return out


def run(setting: str, model_file: str, image, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    model = load_model(model_file, LabelSchema.load())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if setting == "baseline":
        infer.WINDOW_BATCH = 1  # in this child process only
        as_instance_norm(model.network)
    labels = infer.predict(model, image)
    seconds = time.perf_counter() - start
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20
    queue.put((seconds, peak, labels))


def as_instance_norm(network: torch.nn.Module) -> None:
    """The previous release's layers: each one-channel-per-group GroupNorm replaced by the
    InstanceNorm3d it computes, with the same weights."""
    for module in network.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.GroupNorm) and child.num_groups == child.num_channels:
                norm = torch.nn.InstanceNorm3d(child.num_channels, affine=True, eps=child.eps)
                norm.load_state_dict(child.state_dict())
                setattr(module, name, norm)


def measure(setting, model_file, image):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=run, args=(setting, model_file, image, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/segment_speed.json")
    args = parser.parse_args()
    model_file = str(model_path(args.model))
    rows = []
    for name, image in images().items():
        best = {}
        maps = {}
        for _ in range(args.rounds):
            for setting in ("baseline", "cordmap"):
                seconds, peak, labels = measure(setting, model_file, image)
                old = best.get(setting, (np.inf, 0.0))
                best[setting] = (min(old[0], seconds), max(old[1], peak))
                maps[setting] = labels
        agreement = float((maps["baseline"] == maps["cordmap"]).mean())
        row = {
            "image": name,
            "shape": list(image.shape),
            "baseline_s": best["baseline"][0],
            "cordmap_s": best["cordmap"][0],
            "baseline_peak_gb": best["baseline"][1],
            "cordmap_peak_gb": best["cordmap"][1],
            "voxels_same_class": agreement,
        }
        rows.append(row)
        print(
            f"{name:26s} baseline {row['baseline_s']:6.1f} s ({row['baseline_peak_gb']:.2f} GB)"
            f"  cordmap {row['cordmap_s']:6.1f} s ({row['cordmap_peak_gb']:.2f} GB)"
            f"  same class {100 * agreement:.2f} %"
        )
    settings = {
        "window_scale": infer.WINDOW_SCALE,
        "overlap": infer.OVERLAP,
        "window_batch": infer.WINDOW_BATCH,
        "threads": torch.get_num_threads(),
    }
    write_text(args.out, json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
