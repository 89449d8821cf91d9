"""Run one stage over many case folders at once, on Dask distributed.

A local cluster (worker processes bound to 127.0.0.1) by default, or an existing cluster
given by its scheduler address (its workers need cordmap installed and the case folders
at the same paths). Each case runs on its own: a failure is reported for that case and
the others go on. A stage whose record in the case's `case.json` shows unchanged inputs
and outputs is skipped as up to date (re-run it with `force`).

Stages available: `mesh` (GLB meshes of every structure, `cordmap.mesh`), `plan`
(placement search, `cordmap.planning`), `view` (Neuroglancer dataset with meshes,
`cordmap.viewer`), `segment` (U-Net inference with a model file or the bundled model,
`cordmap.learn`) and `report` (the HTML case report, planning first where needed, `cordmap.report`), each with
its default parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cordmap.case import MANIFEST, Case
from cordmap.errors import CordmapError


@dataclass(frozen=True)
class CaseOutcome:
    case: str
    status: str  # "done", "up to date" or "failed"
    message: str = ""
    seconds: float = 0.0


def _plan(case_dir: Path, options: dict) -> None:
    from cordmap.planning.files import plan_file

    plan_file(case_dir)


def _mesh(case_dir: Path, options: dict) -> None:
    from cordmap.mesh.files import mesh_case

    mesh_case(case_dir)


def _view(case_dir: Path, options: dict) -> None:
    from cordmap.viewer.case_viewer import build_case_viewer

    build_case_viewer(Case.open(case_dir))


def _report(case_dir: Path, options: dict) -> None:
    from cordmap.report.case_report import write_case_report

    write_case_report(case_dir)


def _segment(case_dir: Path, options: dict) -> None:
    from cordmap.learn.infer import segment_case

    segment_case(case_dir, options.get("model"))


STAGES: dict[str, Callable[[Path, dict], None]] = {
    "mesh": _mesh,
    "plan": _plan,
    "view": _view,
    "segment": _segment,
    "report": _report,
}


def check_stage(stage: str, options: dict) -> None:
    """Refuse unknown stages, and a missing model file, before anything runs."""
    if stage not in STAGES:
        raise CordmapError(f"unknown stage '{stage}'; use one of {', '.join(STAGES)}")
    if stage == "segment":
        from cordmap.learn.bundled import model_path

        path = model_path(options.get("model"))
        if not path.is_file():
            raise CordmapError(
                f"model file {path} does not exist; pass `model` a model "
                "file written by `cordmap train`, or omit it for the bundled model"
            )


def is_current(case: Case, stage: str, options: dict) -> bool:
    """True when case.json records `stage` with its inputs and outputs unchanged since
    (and, for `segment`, made with the same model file)."""
    entry = case.manifest.get("stages", {}).get(stage)
    if entry is None:
        return False
    if stage == "segment":
        from cordmap.learn.bundled import model_path

        if entry["parameters"].get("model") != str(model_path(options.get("model")).resolve()):
            return False
    inputs = [case.root / e["path"] for e in entry["inputs"]]  # stages read the case's own files
    return case.is_up_to_date(stage, inputs=inputs, parameters=entry["parameters"])


def run_case(stage: str, case_dir: str, options: dict, force: bool = False) -> CaseOutcome:
    """Run `stage` on one case folder; never raises: a failure becomes the outcome."""
    start = time.perf_counter()
    try:
        case = Case.open(case_dir)
        if not force and is_current(case, stage, options):
            return CaseOutcome(case_dir, "up to date", seconds=time.perf_counter() - start)
        STAGES[stage](Path(case_dir), options)
        return CaseOutcome(case_dir, "done", seconds=time.perf_counter() - start)
    except CordmapError as exc:
        message = str(exc)
    except Exception as exc:  # one broken case must not stop the batch
        message = f"{type(exc).__name__}: {exc}"
    return CaseOutcome(case_dir, "failed", message, time.perf_counter() - start)


def study_cases(study: str | Path) -> list[str]:
    """The case folders of a study: the scans of a study database, or the case folders
    (holding case.json) directly inside a folder."""
    path = Path(str(study))
    if path.is_dir():
        cases = sorted(str(p.resolve()) for p in path.iterdir() if (p / MANIFEST).is_file())
        if not cases:
            raise CordmapError(
                f"{path} holds no case folders (sub-folders with {MANIFEST}); "
                "pass a study database or a folder of case folders"
            )
        return cases
    from cordmap.study.registry import Registry

    with Registry.open(study) as registry:
        cases = registry.case_dirs()
    if not cases:
        raise CordmapError(
            f"{study} has no registered scans; add them with "
            "`cordmap study add-scan DB PARTICIPANT CASE_DIR`"
        )
    return cases


def run_batch(
    study: str | Path,
    stage: str,
    *,
    options: dict | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    processes: bool = True,
    force: bool = False,
    on_result: Callable[[CaseOutcome], None] | None = None,
) -> list[CaseOutcome]:
    """Run `stage` over every case of `study` in parallel; return one outcome per case.

    The local cluster has `workers` single-threaded workers: processes, or threads of this
    process with `processes=False` (quicker to start, for small batches and tests).
    """
    from distributed import Client, LocalCluster, as_completed

    options = dict(options or {})
    check_stage(stage, options)
    if workers < 1:
        raise CordmapError(f"`workers` {workers} must be 1 or more")
    cases = study_cases(study)
    if scheduler:
        try:
            client, cluster = Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise CordmapError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); "
                "check the address, or leave out `scheduler` for a local cluster"
            ) from None
    else:
        network = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            **network,
        )
        client = Client(cluster)
    outcomes = []
    try:
        futures = {
            client.submit(run_case, stage, case, options, force, pure=False): case for case in cases
        }
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # a worker died: report the case, keep the others
                outcome = CaseOutcome(futures[future], "failed", f"worker lost ({exc})")
            outcomes.append(outcome)
            if on_result:
                on_result(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    order = {case: i for i, case in enumerate(cases)}
    return sorted(outcomes, key=lambda o: order[o.case])
