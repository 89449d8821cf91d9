"""The models shipped inside cordmap (`cordmap/models/`): weights and their model cards.

Each bundled model is a model file `NAME.pt` (see `learn.modelfile`) with a card
`NAME.json` beside it: what it segments, the data and split it was trained on, the command
and seed that re-create it, the versions and hardware, the training time and the held-out
metrics. `cordmap segment` uses DEFAULT_MODEL when no model file is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cordmap.errors import CordmapError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    card: dict


def bundled_models() -> list[BundledModel]:
    """Every model shipped with this cordmap, by name."""
    return [bundled_model(p.stem) for p in sorted(MODELS_DIR.glob("*.pt"))]


def bundled_model(name: str = DEFAULT_MODEL) -> BundledModel:
    """The bundled model `name` with its card."""
    path, card_path = MODELS_DIR / f"{name}.pt", MODELS_DIR / f"{name}.json"
    if not path.is_file() or not card_path.is_file():
        known = ", ".join(p.stem for p in sorted(MODELS_DIR.glob("*.pt"))) or "none"
        raise CordmapError(
            f"no bundled model '{name}' in {MODELS_DIR} (bundled: {known}); "
            "reinstall cordmap or pass --model a model file"
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise CordmapError(
            f"the card of bundled model '{name}' ({card_path}) is unreadable "
            f"({exc}); reinstall cordmap"
        ) from None
    return BundledModel(name, path, card)


def model_path(model: str | Path | None) -> Path:
    """A model file given by the user, else the bundled default model's."""
    return Path(model) if model is not None else bundled_model().path
