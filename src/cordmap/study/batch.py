"""Run one stage over many case folders at once, on Dask distributed.

A local cluster (worker processes bound to 127.0.0.1) by default, or an existing cluster
given by its scheduler address (its workers need cordmap installed and the case folders
at the same paths). Each case runs on its own: a failure is reported for that case and
the others go on. A stage whose record in the case's `case.json` shows unchanged inputs
and outputs is skipped as up to date (re-run it with `force`).

Stages available (`cordmap.pipeline.stages.run_stage`): `mesh` (GLB meshes of every
structure), `plan` (placement search), `view` (Neuroglancer dataset with meshes), `segment`
(U-Net inference with a model file or the bundled model) and `report` (the HTML case
report, planning first where needed), each with its default parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cordmap.case import MANIFEST, Case
from cordmap.errors import CordmapError
from cordmap.pipeline.stages import CASE_STAGES, is_current, run_stage, stage_inputs


@dataclass(frozen=True)
class CaseOutcome:
    case: str
    status: str  # "done", "up to date" or "failed"
    message: str = ""
    seconds: float = 0.0


def check_stage(stage: str, options: dict) -> None:
    """Refuse unknown stages, and a missing model file, before anything runs."""
    if stage not in CASE_STAGES:
        raise CordmapError(f"unknown stage '{stage}'; use one of {', '.join(CASE_STAGES)}")
    if stage == "segment":
        from cordmap.learn.bundled import model_path

        path = model_path(options.get("model"))
        if not path.is_file():
            raise CordmapError(
                f"model file {path} does not exist; pass `model` a model "
                "file written by `cordmap train`, or omit it for the bundled model"
            )


def run_case(stage: str, case_dir: str, options: dict, force: bool = False) -> CaseOutcome:
    """Run `stage` on one case folder; never raises: a failure becomes the outcome."""
    start = time.perf_counter()
    try:
        case = Case.open(case_dir)
        # current: recorded with the inputs it would read now, whatever its parameters
        if not force and is_current(case, stage, stage_inputs(case, stage, options)):
            return CaseOutcome(case_dir, "up to date", seconds=time.perf_counter() - start)
        run_stage(case_dir, stage, options)
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
