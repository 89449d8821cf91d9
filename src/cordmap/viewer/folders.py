"""Guard for the folders the viewer replaces whole (the dataset, the static site)."""

from __future__ import annotations

from pathlib import Path

from cordmap.errors import CordmapError


def require_replaceable(folder: Path, marker: str, what: str) -> None:
    """Refuse to replace an existing, non-empty folder unless it holds `marker` (is ours)."""
    if folder.exists() and (
        not folder.is_dir() or (any(folder.iterdir()) and not (folder / marker).is_file())
    ):
        raise CordmapError(
            f"{folder} already exists and is not {what}; choose a new or empty folder "
            "(cordmap replaces the whole folder)"
        )
