"""Shared fixtures: a CLI runner, the seed's matrices, the fixture files, the report schema.

Also the rule of the `torch` and `jax` markers (see .ci/): a test marked `torch` skips when
PyTorch is missing, one marked `jax` when JAX is, except in CI (CI=true), where a missing
framework is a broken install and fails the test instead.
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
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator
from numpy.typing import NDArray

from gradcheck_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]

Invoke = Callable[..., Result]
"""invoke("run", "--format", "json") -> the CliRunner result of `gradcheck run --format json`."""


FRAMEWORKS = {"torch": "PyTorch", "jax": "JAX"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for module, name in FRAMEWORKS.items():
        if item.get_closest_marker(module) is None or importlib.util.find_spec(module) is not None:
            continue
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(
                f"{name} is not installed, and CI must run the {module} tests "
                f"(pip install {module})"
            )
        pytest.skip(f"needs {name} (the {module} extra)")


@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner with stdout and stderr apart (click 8.2+) and a wide, colourless terminal."""
    return CliRunner(env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1", "FORCE_COLOR": None})


@pytest.fixture
def invoke(runner: CliRunner) -> Invoke:
    """Run `gradcheck ARGS...` in-process through the group's own main (so exit codes apply)."""

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), prog_name="gradcheck")

    return run


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
    return ROOT / "fixtures"


@pytest.fixture(scope="session")
def model_path(fixtures_dir: Path) -> Callable[[str], str]:
    """model_path("dense_tanh") -> the path of fixtures/models/dense_tanh.py, as a string."""

    def path(stem: str) -> str:
        return str(fixtures_dir / "models" / f"{stem}.py")

    return path


@pytest.fixture(scope="session")
def report_validator() -> Any:
    """A Draft 2020-12 validator for the schema that `gradcheck schema` prints."""
    result = CliRunner().invoke(cli, ["schema"], prog_name="gradcheck")
    assert result.exit_code == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
