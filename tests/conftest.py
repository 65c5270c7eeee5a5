"""Shared fixtures (the seed's matrices, the fixture files, the report schema), the hypothesis
profiles, the order tests start in (the slow ones first), and the rule of the `torch` and `jax`
markers.

A test marked `torch` skips when PyTorch is missing, one marked `jax` when JAX is, except in CI
(CI=true), where a missing framework is a broken install and fails the test instead.

Hypothesis profiles: "ci" (loaded when CI=true) draws as many examples as CI always has, so CI
keeps its strength; "dev", the default elsewhere, draws a fifth of them so that a local run
stays fast. HYPOTHESIS_PROFILE=ci (or pytest's --hypothesis-profile ci) runs CI's counts
locally. A test that draws more or fewer than the default says how many it draws in CI with
helpers.examples().
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, gradcheck
from hypothesis import settings
from jsonschema import Draft202012Validator
from numpy.typing import NDArray

FRAMEWORKS = {"torch": "PyTorch", "jax": "JAX"}


def in_ci() -> bool:
    """Whether this run is CI's (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


settings.register_profile("ci", max_examples=100)
settings.register_profile("dev", max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, in their order, then the rest in theirs: with one worker per core
    the long ones start at once and the many short ones fill in around them, instead of one
    long test starting last and keeping the run waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for module, name in FRAMEWORKS.items():
        if item.get_closest_marker(module) is None or importlib.util.find_spec(module) is not None:
            continue
        if in_ci():
            pytest.fail(
                f"{name} is not installed, and CI must run the {module} tests "
                f"(pip install {module})"
            )
        pytest.skip(f"needs {name} (the {module} extra)")


@pytest.fixture
def seed_arrays() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fresh copies of the seed's X (3x3) and W (3x2), written out here, not taken from the
    package, so a change to the package's seed shows up as a failing test."""
    X = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
    W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    return X, W


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The repository's fixtures/ directory (seed CSVs, models/)."""
    return FIXTURES


@pytest.fixture(scope="session")
def model_path(fixtures_dir: Path) -> Callable[[str], str]:
    """model_path("dense_tanh") -> the path of fixtures/models/dense_tanh.py, as a string."""

    def path(stem: str) -> str:
        return str(fixtures_dir / "models" / f"{stem}.py")

    return path


@pytest.fixture(scope="session")
def report_validator() -> Any:
    """A Draft 2020-12 validator for the schema that `gradcheck schema` prints."""
    result = gradcheck("schema")
    assert result.exit_code == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
