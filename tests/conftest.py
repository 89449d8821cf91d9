"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent (see shared/data/README.md)")
    return DATA


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
