"""Speed of `mesh_labels` over the cores: this tree's code against another tree's (the
old code, e.g. a worktree of main), in the same run, on the machine as it is ("quiet")
and with every core busy (one busy-loop process per core during the timing).

Each timing is one fresh Python process that imports cordmap from the tree's src/
(PYTHONPATH), loads the case's labels (pickled once by this script; not timed) and
times `mesh_labels(labels, reduction=0.9)` with its default parallelism: the old code
decides from /proc/loadavg, the new one uses the usable cores. The two trees run in
alternating order, --repeat rounds per condition (the machine is shared and its load
drifts); medians are reported, and each run's seconds, CPU seconds (the process and its
children) and 1-minute load average are kept. The meshes of both trees (and of the new
code with workers=1) are compared array for array. Prints a table and writes JSON.
Usage:

    .venv/bin/python benchmarks/mesh_parallel.py --old-src ../wt-mesh-base/src
        [--cases phantom48,pam50] [--repeat 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cordmap.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
REDUCTION = 0.9

CHILD = """
import pickle, resource, sys, time
import numpy as np
def cpu():
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)
def main():
    from cordmap.mesh import mesh_labels
    with open(sys.argv[1], "rb") as f:
        labels = pickle.load(f)
    options = {} if sys.argv[3] == "default" else {"workers": int(sys.argv[3])}
    start, cpu_start = time.perf_counter(), cpu()
    meshes = mesh_labels(labels, reduction=float(sys.argv[4]), **options)
    seconds, cpu_s = time.perf_counter() - start, cpu() - cpu_start
    if sys.argv[2] != "-":
        arrays = {}
        for i, m in meshes.items():
            arrays[f"v{i}"] = m.vertices.view(np.ndarray)
            arrays[f"f{i}"] = m.faces.view(np.ndarray)
        np.savez(sys.argv[2], **arrays)
    print(seconds, cpu_s, sum(len(m.faces) for m in meshes.values()))
if __name__ == "__main__":
    main()
"""


def _cases():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import mesh  # benchmarks/mesh.py: the same cases

    return mesh.CASES


def run_once(src: Path, labels_file: Path, arrays: str = "-", workers: str = "default") -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(CHILD)
    try:
        out = subprocess.run(
            [sys.executable, script.name, str(labels_file), arrays, workers, str(REDUCTION)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    finally:
        os.unlink(script.name)
    return {
        "seconds": round(float(out[0]), 3),
        "cpu_s": round(float(out[1]), 3),
        "triangles": int(out[2]),
        "load_1min": round(os.getloadavg()[0], 2),
    }


class BusyCores:
    """One busy-loop process per core while the block runs."""

    def __enter__(self):
        self.processes = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)
        ]
        time.sleep(1.0)  # let them take the cores
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()


def same_meshes(a: Path, b: Path) -> bool:
    with np.load(a) as x, np.load(b) as y:
        return sorted(x.files) == sorted(y.files) and all(
            np.array_equal(x[k], y[k]) and x[k].dtype == y[k].dtype for k in x.files
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-src", type=Path, required=True, help="src/ of the old code")
    parser.add_argument("--cases", default="phantom48,pam50")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "mesh_parallel.json"
    )
    args = parser.parse_args()
    trees = {"old": args.old_src.resolve(), "new": ROOT / "src"}
    cases = _cases()
    results = []
    with tempfile.TemporaryDirectory(prefix="cordmap-bench-") as tmp:
        tmp = Path(tmp)
        for key in args.cases.split(","):
            name, _, labels = cases[key]()
            labels_file = tmp / f"{key}.pkl"
            labels_file.write_bytes(pickle.dumps(labels))
            entry = {"key": key, "case": name, "labels": len(labels.ids())}
            # identical meshes: old (default), new (default), new with workers=1
            arrays = {t: tmp / f"{key}-{t}.npz" for t in ("old", "new", "new1")}
            run_once(trees["old"], labels_file, str(arrays["old"]))
            run_once(trees["new"], labels_file, str(arrays["new"]))
            run_once(trees["new"], labels_file, str(arrays["new1"]), workers="1")
            entry["same_meshes_old_new"] = same_meshes(arrays["old"], arrays["new"])
            entry["same_meshes_new_workers_1"] = same_meshes(arrays["new"], arrays["new1"])
            for condition in ("quiet", "busy"):
                runs = {"old": [], "new": []}
                for round_number in range(args.repeat):
                    order = ["old", "new"] if round_number % 2 == 0 else ["new", "old"]
                    for tree in order:
                        if condition == "busy":
                            with BusyCores():
                                runs[tree].append(run_once(trees[tree], labels_file))
                        else:
                            runs[tree].append(run_once(trees[tree], labels_file))
                medians = {t: statistics.median(r["seconds"] for r in runs[t]) for t in runs}
                entry[condition] = {
                    "median_s": medians,
                    "new_over_old": round(medians["new"] / medians["old"], 3),
                    "per_round_new_over_old": [
                        round(n["seconds"] / o["seconds"], 3)
                        for o, n in zip(runs["old"], runs["new"])
                    ],
                    "runs": runs,
                }
                print(
                    f"{name:28} {condition:5} old {medians['old']:6.2f} s  new "
                    f"{medians['new']:6.2f} s  new/old {entry[condition]['new_over_old']:.2f}  "
                    f"(loads {', '.join(str(r['load_1min']) for r in runs['new'])})",
                    flush=True,
                )
            results.append(entry)
            print(
                f"{name}: same meshes old/new {entry['same_meshes_old_new']}, "
                f"new workers=1/default {entry['same_meshes_new_workers_1']}",
                flush=True,
            )
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    write_text(
        args.out,
        json.dumps(
            {
                "machine": machine,
                "old_src": str(args.old_src),
                "reduction": REDUCTION,
                "repeat": args.repeat,
                "results": results,
            },
            indent=1,
        )
        + "\n",
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
