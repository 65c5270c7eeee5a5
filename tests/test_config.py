"""A config for CI: `[tool.gradcheck]` in pyproject.toml lists a project's checks, and
`gradcheck check` runs them all with the outputs of a whole-file run; how the config is found
and read. (What a config holds wrong is exit 2 naming the key, the file and the line:
test_bad_input.)"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from helpers import gradcheck

from gradcheck_cli.project.config import find_config, read_config
from gradcheck_cli.settings import EntrySelection

CONFIG = """\
[project]
name = "demo"

[tool.gradcheck]
points = 2
seed = 3

[[tool.gradcheck.checks]]
model = "src/layers.py"
only = ["affine", "batchnorm", "softmax_loss"]

[[tool.gradcheck.checks]]
name = "elu"
model = "src/elu.py:elu"
points = 5

[[tool.gradcheck.checks]]
name = "scaled"
model = "src/scaled.py:scaled"
inputs = { x = "data/x.npy" }
params = { factor = 2.0 }
method = "five-point"
"""

SCALED = """\
def scaled_forward(x):
    return 2 * x, x


def scaled_backward(dout, cache, factor):
    return factor * dout
"""


@pytest.fixture
def project(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A project: its pyproject.toml, three model files under src/, an input under data/."""
    (tmp_path / "src").mkdir()
    (tmp_path / "data").mkdir()
    models = fixtures_dir / "models"
    shutil.copy(models / "cs231n_layers_bug.py", tmp_path / "src" / "layers.py")
    shutil.copy(models / "negative_branch.py", tmp_path / "src" / "elu.py")
    (tmp_path / "src" / "scaled.py").write_text(SCALED, encoding="utf-8")
    np.save(tmp_path / "data" / "x.npy", np.array([1.0, -2.0, 3.0]))
    (tmp_path / "pyproject.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


Check = Callable[..., Result]


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Check:
    """`gradcheck check ARGS` run from `cwd`."""

    def run(cwd: Path, *args: str) -> Result:
        monkeypatch.chdir(cwd)
        return gradcheck("check", *args)

    return run


def test_check_runs_every_check_of_the_config(
    check: Check, project: Path, report_validator: Any
) -> None:
    """From a subdirectory: the nearest pyproject.toml with [tool.gradcheck] is found upward,
    paths are its directory's, defaults apply to every check and a check's own settings win.
    One document: the file's three selected layers at 2 points, elu at 5, scaled with its
    input file, parameter and method; the bug in batchnorm and elu's negative branch fail."""
    result = check(project / "data", "--format", "json")
    assert result.exit_code == 1, result.stderr
    document = json.loads(result.stdout)
    report_validator.validate(document)
    assert document["command"] == "check"
    assert document["source"] == str(project / "pyproject.toml")
    assert document["points"] == 5
    layers = {layer["name"]: layer for layer in document["layers"]}
    assert list(layers) == ["affine", "batchnorm", "softmax_loss", "elu", "scaled"]
    assert {n: layer["verdict"] for n, layer in layers.items()} == {
        "affine": "passed",
        "batchnorm": "failed",
        "softmax_loss": "passed",
        "elu": "failed",
        "scaled": "passed",
    }
    assert {n: len(layer["points"]) for n, layer in layers.items()} == {
        "affine": 2,
        "batchnorm": 2,
        "softmax_loss": 2,
        "elu": 5,
        "scaled": 2,
    }
    assert [layer["check"] for layer in layers.values()] == [None, None, None, "elu", "scaled"]
    scaled = layers["scaled"]["points"][0]["report"]
    assert scaled["inputs"]["x"]["source"] == str(project / "data" / "x.npy")
    assert scaled["settings"]["method"] == "five-point"
    assert scaled["settings"]["seed"] == 3
    assert layers["elu"]["points"][0]["report"]["settings"]["method"] == "central"


def test_check_writes_one_junit_file_with_a_suite_per_layer(check: Check, project: Path) -> None:
    config = project / "pyproject.toml"
    result = check(project, "--config", str(config), "--junit-xml", "out.xml")
    assert result.exit_code == 1, result.stderr
    suites = ET.parse(project / "out.xml").getroot().findall("testsuite")
    assert [s.get("name", "").rpartition(":")[2] for s in suites] == [
        "affine",
        "batchnorm",
        "softmax_loss",
        "elu",
        "scaled",
    ]
    assert [s.get("failures") != "0" for s in suites] == [False, True, False, True, False]
    assert result.stdout.splitlines()[-1] == (
        "FAILED: 2 of 5 layers have a wrong gradient: batchnorm, elu (at point 2)."
    )


def test_a_check_that_cannot_load_is_its_own_error(check: Check, project: Path) -> None:
    """A check whose model file is missing is that check's error; the others still run."""
    config = project / "pyproject.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('"src/elu.py:elu"', '"src/gone.py:elu"'),
        encoding="utf-8",
    )
    result = check(project, "--format", "json")
    assert result.exit_code == 1
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert layers["elu"]["verdict"] == "error"
    assert layers["elu"]["error"] == f"model file not found: {project / 'src' / 'gone.py'}"
    assert layers["scaled"]["verdict"] == "passed"
    # The layer as --model would name it from the working directory (the project's root).
    assert layers["elu"]["model"] == "src/gone.py:elu"
    assert result.stderr == (
        f"gradcheck: error: src/gone.py:elu: model file not found: {project / 'src' / 'gone.py'}\n"
    )


def test_settings_read_from_the_config(tmp_path: Path) -> None:
    """Every kind of value: defaults, dashes or underscores, lists or comma strings."""
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.gradcheck]\nmax-calls = 10\nentries = 'random:3'\nwrt = ['x', 'b']\n"
        "dtype = 'float32'\n\n[[tool.gradcheck.checks]]\nmodel = 'm.py:layer'\n"
        "rtol = 1\nskip = 'a,b'\ninputs = 'all.npz'\nparams = { p = { q = [1, 2] } }\n",
        encoding="utf-8",
    )
    [request] = read_config(path).requests
    assert request.asked.max_calls == 10
    assert request.asked.entries == EntrySelection("random", count=3)
    assert request.asked.wrt == ("x", "b")
    assert request.asked.rtol == 1.0
    assert request.asked.jobs is None
    assert request.skip == ("a", "b")
    assert request.options.dtype == "float32"
    assert request.options.model_spec == f"{tmp_path / 'm.py'}:layer"
    assert request.options.inputs_archive == str(tmp_path / "all.npz")
    assert request.options.param_specs == (("p", {"q": [1, 2]}),)
    assert request.where == "pyproject.toml check 1"


TOP = "[tool.gradcheck]\npoints = 2\n\n[[tool.gradcheck.checks]]\nmodel = 'a.py'\n"


def test_a_nearer_pyproject_without_the_table_is_passed_over(tmp_path: Path) -> None:
    """find_config climbs past a pyproject.toml without [tool.gradcheck] to one with it."""
    (tmp_path / "pyproject.toml").write_text(TOP, encoding="utf-8")
    inner = tmp_path / "pkg"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    assert find_config(inner) == tmp_path / "pyproject.toml"


def test_no_config_up_to_the_root_is_an_error() -> None:
    """find_config climbs to the root and says what it looked for (the command line's exit 2
    for a missing config is in test_bad_input)."""
    with pytest.raises(Exception, match=r"no pyproject.toml with a \[tool.gradcheck\] table"):
        find_config(Path("/"))


def test_an_output_over_a_configs_input_is_refused(check: Check, project: Path) -> None:
    """The config's own files (it, the models, the inputs) are never overwritten."""
    result = check(project, "--output", "data/x.npy")
    assert result.exit_code == 2
    assert "refusing to overwrite an input" in result.stderr
    result = check(project, "--junit-xml", "pyproject.toml")
    assert result.exit_code == 2
    assert "is the file given to --config" in result.stderr


def test_an_error_before_the_config_is_read_writes_no_junit_over_a_file(
    check: Check, project: Path
) -> None:
    """The config's files are not known while it cannot be read: the error's JUnit file goes
    only where no file is (so never over a model file the config would have named)."""
    config = project / "pyproject.toml"
    config.write_text(CONFIG + "\nrtoll = 1\n", encoding="utf-8")
    model = project / "src" / "layers.py"
    before = model.read_bytes()
    result = check(project, "--junit-xml", "src/layers.py")
    assert result.exit_code == 2
    assert model.read_bytes() == before
    result = check(project, "--junit-xml", "new.xml")
    assert result.exit_code == 2
    assert "unknown key 'rtoll'" in (project / "new.xml").read_text(encoding="utf-8")


def test_a_layer_the_file_does_not_have_is_exit_2_naming_the_check(
    check: Check, project: Path
) -> None:
    """only = [...] names layers of the check's file: a name it has no layer of is the
    config's mistake (exit 2, before any check), as --only is on the command line."""
    config = project / "pyproject.toml"
    config.write_text(CONFIG.replace('"softmax_loss"]', '"softmax"]'), encoding="utf-8")
    result = check(project, "--output", "out.json")
    assert result.exit_code == 2
    assert result.stderr == (
        "gradcheck: error: pyproject.toml check 1: only softmax: layers.py has no layer of "
        "that name; its layers are affine, relu, affine_relu, batchnorm, layernorm, dropout, "
        "conv, max_pool, softmax_loss, svm_loss\n"
    )
    assert not (project / "out.json").exists()
