"""Time of `cordmap auto` (import -> segment -> levels -> validate -> mesh -> plan ->
viewer site -> report) on clinical-size images, stage by stage, against the previous
release's inference (sliding windows through the network one at a time, instance norm
layers) in the same run.

Usage: .venv/bin/python benchmarks/auto.py [--rounds 1]

Images: an axial 512 x 512 x 48 phantom (0.5 mm pixels, 3 mm slices; NIfTI) and a real
sagittal lumbar scan (lumbar-mri vb2-07, 330 x 157 x 25, 1 x 1 x 3 mm). Each run is one
fresh process (`run_auto` into a new case folder; models and modules loaded inside the
timing, as a user's `cordmap auto` would); the best of `--rounds` is kept.
Writes benchmarks/results/auto.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from cordmap.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def images(folder: Path) -> dict[str, Path]:
    from cordmap.anatomy.phantom import make_phantom
    from cordmap.io.nifti import write_nifti

    phantom = make_phantom(1000, pixel_mm=0.5, fov_mm=(256.0, 256.0), n_slices=48)
    write_nifti(phantom.image, folder / "phantom512.nii.gz")
    out = {"axial 512x512x48 phantom": folder / "phantom512.nii.gz"}
    if (DATA / "lumbar-mri").is_dir():
        out["sagittal lumbar vb2-07"] = DATA / "lumbar-mri" / "vb2-07_img.nii.gz"
    return out


def run(setting: str, image: Path, case: Path, queue) -> None:
    from cordmap.learn import infer, modelfile
    from cordmap.pipeline.auto import run_auto

    if setting == "baseline":  # in this child process only
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from segment_speed import as_instance_norm

        infer.WINDOW_BATCH = 1
        load = modelfile.load_model

        def load_previous(*args, **kwargs):
            model = load(*args, **kwargs)
            as_instance_norm(model.network)
            return model

        modelfile.load_model = load_previous
    stages: dict[str, float] = {}
    clock = {"step": None, "at": time.perf_counter()}

    def on_step(step: str) -> None:
        now = time.perf_counter()
        if clock["step"]:
            stages[clock["step"]] = now - clock["at"]
        clock.update(step=step, at=now)

    start = time.perf_counter()
    run_auto(image, case, on_step=on_step)
    end = time.perf_counter()
    stages[clock["step"]] = end - clock["at"]
    queue.put((end - start, stages))


def measure(setting: str, image: Path, case: Path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run, args=(setting, image, case, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/auto.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, image in images(folder).items():
            best: dict[str, tuple[float, dict]] = {}
            for round_ in range(args.rounds):
                for setting in ("baseline", "cordmap"):
                    case = folder / f"case-{len(rows)}-{setting}-{round_}"
                    seconds, stages = measure(setting, image, case)
                    if seconds < best.get(setting, (float("inf"), {}))[0]:
                        best[setting] = (seconds, stages)
            row = {
                "image": name,
                **{f"{s}_s": round(best[s][0], 2) for s in best},
                **{f"{s}_stages_s": {k: round(v, 2) for k, v in best[s][1].items()} for s in best},
            }
            rows.append(row)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in row["cordmap_stages_s"].items())
            print(
                f"{name:26s} baseline {row['baseline_s']:6.1f} s  cordmap {row['cordmap_s']:6.1f} s"
                f"  ({stages})"
            )
    write_text(args.out, json.dumps({"rows": rows}, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
