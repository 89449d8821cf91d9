"""The case folder: one subject's image, labels and everything made from them.

Names follow BIDS derivatives (`sub-01_T2w.nii.gz`, `sub-01_T2w_desc-manual_dseg.nii.gz`,
`..._desc-unet_dseg.nii.gz`). `case.json` records what was made from what: for every
stage its inputs and outputs with SHA-256 checksums, its parameters, the cordmap version
and the time, so that later stages (mesh, view, plan, segment) add to the folder without
guessing and re-running can skip what is up to date.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cordmap import __version__
from cordmap.atomic import write_text
from cordmap.errors import CordmapError
from cordmap.io.nifti import read_labels, read_nifti
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume, Volume

MANIFEST = "case.json"
PROTOCOL = "protocol.json"
SUBJECT_PATTERN = re.compile(r"^sub-[A-Za-z0-9]+$")
MAX_SUBJECT = 64  # file names stay well under the 255 bytes file systems allow
LABEL_SOURCES = ("manual", "unet")  # preference order of `Case.labels()`


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(sha256(file).encode())
        return digest.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_subject(subject: str) -> str:
    if len(subject) > MAX_SUBJECT:
        raise CordmapError(
            f"subject '{subject[:20]}...' is {len(subject)} characters long; "
            f"use a BIDS subject label of at most {MAX_SUBJECT}, e.g. sub-01"
        )
    if not SUBJECT_PATTERN.match(subject):
        raise CordmapError(
            f"subject '{subject}' is not a BIDS subject label; use sub-<letters/digits>, e.g. sub-01"
        )
    return subject


class Case:
    """An existing case folder. Open with `Case.open(root)`."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest

    @classmethod
    def open(cls, root: str | Path) -> Case:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise CordmapError(
                f"{root} is not a cordmap case folder (no {MANIFEST}); create one with "
                "`cordmap import IMAGE CASE_DIR`"
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CordmapError(f"{path} is corrupt ({exc}); re-run `cordmap import`") from None
        return cls(root, manifest)

    # -- names -------------------------------------------------------------------------
    @property
    def subject(self) -> str:
        return self.manifest["subject"]

    def path(self, relative: str | Path) -> Path:
        return self.root / relative

    @property
    def image_path(self) -> Path:
        return self.root / f"{self.subject}_T2w.nii.gz"

    def labels_path(self, desc: str) -> Path:
        return self.root / f"{self.subject}_T2w_desc-{desc}_dseg.nii.gz"

    # -- contents ----------------------------------------------------------------------
    @property
    def schema(self) -> LabelSchema:
        return LabelSchema.load(self.root / PROTOCOL)

    def image(self) -> Volume:
        return read_nifti(self.image_path)

    def label_sources(self) -> list[str]:
        """Label volumes present in the case, preferred first (manual, then unet)."""
        return [d for d in LABEL_SOURCES if self.labels_path(d).is_file()]

    def labels(self, desc: str | None = None) -> LabelVolume:
        """The case's label volume: `desc` if given, else manual, else the U-Net's."""
        sources = [desc] if desc else self.label_sources()
        for source in sources:
            path = self.labels_path(source)
            if path.is_file():
                return read_labels(path, self.schema)
        what = f"'{desc}' labels" if desc else "labels"
        raise CordmapError(
            f"case {self.root} has no {what}; add them with `cordmap import IMAGE {self.root} "
            "--labels LABELS` or run `cordmap segment`"
        )

    # -- provenance --------------------------------------------------------------------
    def record(
        self,
        stage: str,
        *,
        inputs=(),
        outputs=(),
        parameters: dict | None = None,
        results: dict | None = None,
    ) -> None:
        """Record a finished stage: its inputs and outputs (with checksums), parameters, and
        what it found (`results`: shown to the user, not part of its freshness)."""
        self.manifest.setdefault("stages", {})[stage] = {
            "cordmap_version": __version__,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": parameters or {},
            "inputs": [self._file_entry(p) for p in inputs],
            "outputs": [self._file_entry(p) for p in outputs],
            **({"results": results} if results is not None else {}),
        }
        self.save()

    def is_up_to_date(
        self, stage: str, *, inputs=(), parameters: dict | None = None, outside=()
    ) -> bool:
        """True when `stage` ran with these parameters on inputs whose contents are unchanged
        and its outputs are still there, unmodified.

        `outside`: the recorded names of further inputs, after `inputs`, that lay outside
        the case (the manifest keeps their names only, see `_relative`); they are taken as
        recorded, since a stage reading another's output from the case cannot see them."""
        entry = self.manifest.get("stages", {}).get(stage)
        if not entry or entry["parameters"] != (parameters or {}):
            return False
        names = [self._relative(p) for p in inputs] + list(outside)
        if [e["path"] for e in entry["inputs"]] != names:
            return False
        current = [(Path(p), e) for p, e in zip(inputs, entry["inputs"])]
        current += [(self.root / e["path"], e) for e in entry["outputs"]]
        return all(path.exists() and sha256(path) == e["sha256"] for path, e in current)

    def save(self) -> None:
        write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=1) + "\n")

    def _relative(self, path: str | Path) -> str:
        """A file's path relative to the case; outside the case, its name only: export
        folders are often named after the patient, and the manifest must not carry that."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.name

    def _file_entry(self, path: str | Path) -> dict:
        return {"path": self._relative(path), "sha256": sha256(path)}

    def summary(self) -> dict:
        """What the case holds: geometry of the image and voxel counts of the labels."""
        image = self.image()
        out: dict[str, Any] = {
            "case": str(self.root),
            "subject": self.subject,
            "image": {
                "shape": list(image.shape),
                "spacing_mm": [round(s, 4) for s in image.spacing],
                "field_of_view_mm": [round(n * s, 1) for n, s in zip(image.shape, image.spacing)],
            },
            "labels": {},
            "stages": sorted(self.manifest.get("stages", {})),
        }
        for source in self.label_sources():
            labels = self.labels(source)
            schema = labels.schema
            out["labels"][source] = {
                (schema[i].name if i in schema else f"unknown id {i}"): {
                    "id": i,
                    "voxels": n,
                    "volume_mm3": round(n * labels.voxel_volume, 1),
                }
                for i, n in labels.counts().items()
            }
        return out
