"""Ship a trained recipe run as the bundled default model, with its model card.

Usage: .venv/bin/python tools/bundle_model.py RUN_DIR [--results benchmarks/results/default_model.json]

Copies RUN_DIR/model.pt to src/cordmap/models/default.pt and writes the card
src/cordmap/models/default.json: what the model segments, the data and split, the command
and seed that re-create it, versions, hardware, training time (from the run folder: run.json
is written when training starts, model.pt when it ends) and the held-out metrics measured
by benchmarks/default_model.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

from cordmap import __version__
from cordmap.case import sha256
from cordmap.learn.bundled import DEFAULT_MODEL, MODELS_DIR
from cordmap.learn.recipe import DRAW_SHARE, PHANTOMS, SPLIT_SEED

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks/results/default_model.json"
    )
    args = parser.parse_args()
    model_file, run_json = args.run / "model.pt", args.run / "run.json"
    payload = torch.load(model_file, map_location="cpu", weights_only=True)
    training = payload["training"]
    run = json.loads(run_json.read_text())
    results = json.loads(args.results.read_text())
    seconds = model_file.stat().st_mtime - run_json.stat().st_mtime
    heldout = {
        key: {
            "scans": row["scans"],
            "dice": round(row["dice_mean"], 3),
            "levels_right": f"{row['levels_right']}/{row['levels_total']}",
        }
        for key, row in results["lumbar_summary"].items()
    }
    heldout["cord sct-t2 (real T2, cervical)"] = {
        "dice": round(results["cord_heldout"][0]["dice"], 3),
        "hd95_mm": results["cord_heldout"][0]["hd95_mm"],
    }
    for row in results["cord_heldout"][1:]:  # the same image through fixed contrast curves
        heldout[f"cord {row['case']} (proxy)"] = {"dice": round(row["dice"], 3)}
    heldout["phantoms, mean (varied contrast)"] = {
        k: round(v or 0.0, 3) for k, v in results["phantom_heldout"]["dice"].items()
    }
    card = {
        "name": DEFAULT_MODEL,
        "summary": (
            "small 3D U-Net (cord, CSF, vertebra, disc) trained on synthetic images "
            "of random contrast and on real T1/T2 lumbar MRI; held-out vertebra Dice "
            + ", ".join(
                f"{k.split()[1]} {v['dice']}"
                for k, v in heldout.items()
                if k.startswith("vertebra ") and "dice" in v
            )
            + f", cord Dice sct-t2 {heldout['cord sct-t2 (real T2, cervical)']['dice']}"
        ),
        "classes": [c["name"] for c in payload["mapping"]["classes"]],
        "protocol": payload["mapping"]["schema"],
        "command": "cordmap train --recipe default --data ../shared/data --out RUN",
        "bundled_by": "python tools/bundle_model.py RUN",
        "seed": training["settings"]["seed"],
        "settings": training["settings"],
        "data": {
            "synthetic": f"{PHANTOMS} phantoms and the PAM50 template's cord/CSF/spine as label "
            "maps, a new random contrast and resolution per patch (learn/synth.py)",
            "real": "lumbar-mri (vertebral bodies or discs labelled; the rest unknown), "
            "pam50-small (cord labelled)",
            "draw_share": DRAW_SHARE,
            "split_seed": SPLIT_SEED,
            "split": training["cases"],
            "citations": "lumbar-mri: MyoSegmenTUM (Burian et al. 2019), Zukic et al. 2014, "
            "Chu et al. 2015, Menezes-Reis et al. 2016, as redistributed by "
            "FastCleverSeg (Ramos et al. 2024); PAM50 (De Leener et al. 2018)",
        },
        "epochs": training["epochs"],
        "best_val_loss": training["best_val_loss"],
        "class_weights": training.get("class_weights"),
        "versions": {
            "cordmap": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "hardware": f"{cpu_name()}, {os.cpu_count()} cores, no GPU"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name(0),
        "training_time": f"{seconds / 60:.0f} min",
        "heldout": heldout,
        "sha256": sha256(model_file),
        "run_settings": run,
    }
    MODELS_DIR.mkdir(exist_ok=True)
    shutil.copyfile(model_file, MODELS_DIR / f"{DEFAULT_MODEL}.pt")
    (MODELS_DIR / f"{DEFAULT_MODEL}.json").write_text(json.dumps(card, indent=1) + "\n")
    print(
        f"bundled {model_file} ({model_file.stat().st_size / 1e6:.1f} MB) as "
        f"{MODELS_DIR / DEFAULT_MODEL}.pt",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
