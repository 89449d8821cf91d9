"""The one exception family of cordmap.

Every message is written for the clinician-researcher at the keyboard: it names the
file or series at fault and says what to do about it. The CLI prints the message and
exits non-zero; `--debug` shows the traceback.
"""


class CordmapError(Exception):
    """An input, a parameter or a state that cordmap cannot work with."""


class NoPlan(CordmapError):
    """A sound case from which no plan can, or should, be made: the stages that do not need
    a plan still run (`cordmap auto`, `cordmap report`)."""


class NotInView(NoPlan):
    """The image does not show what a result needs (the enlargement, enough cord)."""


#: Modules of the optional extras (pyproject.toml) -> the extra that installs them.
EXTRAS = {
    "torch": "learn",
    "pytorch_lightning": "learn",
    "lightning": "learn",
    "monai": "learn",
    "neuroglancer": "viewer",
    "sqlalchemy": "study",
    "distributed": "study",
    "dask": "study",
}


def missing_extra(exc: ModuleNotFoundError) -> CordmapError | None:
    """The error naming the extra to install when `exc` is about one of its modules."""
    extra = EXTRAS.get(exc.name or "")
    if extra is None:
        return None
    return CordmapError(
        f"this needs the '{extra}' extra ({exc.name} is not installed): "
        f"pip install -c constraints.txt 'cordmap[{extra}]'"
    )
