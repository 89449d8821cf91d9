"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent (see shared/data/README.md)")
    return DATA


@pytest.fixture
def one_row_paddle_file(tmp_path) -> Path:
    """A paddle file (`--paddles`) with one model, "Mine 1x4": 30 mm, one contact row."""
    model = {
        "name": "Mine 1x4",
        "manufacturer": "test",
        "array_length_mm": 30.0,
        "width_mm": 6.0,
        "sources": {},
        "rows": [
            {
                "offset_mm": 2.0,
                "lateral_mm": [0.0],
                "contact_length_mm": 3.0,
                "contact_width_mm": 2.0,
            }
        ],
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"models": [model]}))
    return path


# Property-based tests (Hypothesis): a bounded profile for CI, a longer one for local runs
# (HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/test_reader_properties.py).
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile(__import__("os").environ.get("HYPOTHESIS_PROFILE", "ci"))
