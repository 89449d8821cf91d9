"""Wall time of `cordmap demo`: this tree against another tree (e.g. a worktree of the
commit before a change), in the same run, alternating, on this machine as it is.

Each run is a fresh Python process importing cordmap from the tree's src/ (PYTHONPATH)
and calling `run_demo` into a new folder; it also counts how many times label volumes
were marched (meshed). Medians of --repeat rounds are reported; prints a table and writes
JSON. Usage:

    git worktree add /tmp/base <commit> && \\
    .venv/bin/python benchmarks/demo.py --old-src /tmp/base/src [--repeat 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cordmap.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from cordmap.mesh import surfaces
marched = []
init = surfaces._MarchedLabels.__init__
def counted(self, *args, **kwargs):
    marched.append(1)
    init(self, *args, **kwargs)
surfaces._MarchedLabels.__init__ = counted
try:
    from cordmap.pipeline.demo import run_demo
except ImportError:  # a tree from before the pipeline layer
    from cordmap.demo import run_demo
start = time.perf_counter()
run_demo(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "marched": len(marched)}))
"""


def _run(src: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"demo failed with {src}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_1min"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-src", type=Path, required=True, help="src/ of the baseline tree")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/demo.json")
    args = parser.parse_args()
    trees = {"old": args.old_src.resolve(), "new": ROOT / "src"}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
            for name in order:
                runs[name].append(_run(trees[name], Path(tmp) / f"{name}-{round_}"))
    summary = {
        name: {
            "median_s": round(statistics.median(r["seconds"] for r in results), 2),
            "marched": results[0]["marched"],
        }
        for name, results in runs.items()
    }
    print(f"{'tree':6} {'median s':>9} {'meshings':>9}")
    for name, row in summary.items():
        print(f"{name:6} {row['median_s']:9.2f} {row['marched']:9d}")
    report = {
        "benchmark": "cordmap demo wall time, old vs new tree, same run",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": summary,
        "runs": runs,
    }
    write_text(args.out, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
