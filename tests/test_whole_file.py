"""A whole file in one command: `gradcheck run --model layers.py` checks every layer
the file defines, each with its own examples, one section per layer, one JSON document, one
JUnit suite per layer, one annotation per failing layer; the exit code is the worst verdict."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import document_of, gradcheck

from gradcheck_cli.project.runner import CheckRequest, run_command
from gradcheck_cli.project_report import ProjectReport
from gradcheck_cli.settings import COMMAND_LINE, CheckSettings
from gradcheck_cli.subject.options import InputOptions

TEN = [
    "affine",
    "relu",
    "affine_relu",
    "batchnorm",
    "layernorm",
    "dropout",
    "conv",
    "max_pool",
    "softmax_loss",
    "svm_loss",
]
"""cs231n_layers.py's layers, in the file's order."""

TWO_LAYERS = """\
import numpy as np


def good_forward(x):
    return 2 * x, x


def good_backward(dout, cache):
    return 2 * dout


def good_example_inputs():
    return {"x": np.arange(1.0, 4.0)}


def unfed_forward(x, y):
    return x * y, (x, y)


def unfed_backward(dout, cache):
    x, y = cache
    return dout * y, dout * x


def raises_forward(x):
    raise RuntimeError("boom")


def raises_backward(dout, cache):
    return dout


def raises_example_inputs():
    return {"x": np.ones(2)}


def wrong_forward(x):
    return 3 * x, x


def wrong_backward(dout, cache):
    return 2 * dout


def wrong_example_inputs():
    return {"x": np.ones(2)}
"""
"""A file whose layers pass (good), cannot be fed (unfed: no examples), raise (raises) and
are wrong (wrong)."""


@pytest.fixture(scope="module")
def ten(fixtures_dir: Path) -> Path:
    return fixtures_dir / "models" / "cs231n_layers.py"


@pytest.fixture(scope="module")
def ten_bug(fixtures_dir: Path) -> Path:
    return fixtures_dir / "models" / "cs231n_layers_bug.py"


def test_one_command_checks_all_ten_layers(ten: Path, report_validator: Any) -> None:
    """Every layer of the file, in its order, each at its own examples: one JSON document
    holding a report per layer, valid against the schema; all pass, exit 0."""
    result = gradcheck("run", "--model", str(ten), "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = document_of(result)
    report_validator.validate(document)
    assert document["schema_version"] == 4
    assert document["verdict"] == "passed"
    assert [layer["name"] for layer in document["layers"]] == TEN
    for layer in document["layers"]:
        assert layer["verdict"] == "passed"
        assert layer["model"].endswith(f"cs231n_layers.py:{layer['name']}")
        [point] = layer["points"]
        report = point["report"]
        assert point["origin"] == "given"
        assert report["command"] == "run"
        assert report["model"]["name"] == layer["name"]
        assert all(info["source"] == "example_inputs()" for info in report["inputs"].values())
    # Each layer has its own inputs: the conv layer's x is 4-D, the affine layer's 3-D.
    shapes = {
        layer["name"]: layer["points"][0]["report"]["inputs"]["x"]["shape"]
        for layer in document["layers"]
    }
    assert shapes["conv"] == [2, 2, 4, 4]
    assert shapes["affine"] == [3, 2, 3]
    assert document["layers"][2]["points"][0]["report"]["summary"]["w"]["entries"] == 20


def test_the_planted_bug_is_found_in_its_layer_and_nowhere_else(
    ten_bug: Path, tmp_path: Path
) -> None:
    """The twin with batchnorm's dx missing its variance term: exit 1, batchnorm failed on dx
    alone (offset diagnosis), the nine others passed; one JUnit file with ten suites, the
    failure in batchnorm's."""
    junit = tmp_path / "layers.xml"
    result = gradcheck(
        "run", "--model", str(ten_bug), "--format", "json", "--junit-xml", str(junit)
    )
    assert result.exit_code == 1, result.stderr
    document = document_of(result)
    verdicts = {layer["name"]: layer["verdict"] for layer in document["layers"]}
    assert verdicts == {name: "failed" if name == "batchnorm" else "passed" for name in TEN}
    batchnorm = document["layers"][TEN.index("batchnorm")]["points"][0]["report"]
    failed = {name: counts["failed"] for name, counts in batchnorm["summary"].items()}
    assert failed == {"x": 15, "gamma": 0, "beta": 0}
    assert [d["kind"] for d in batchnorm["diagnosis"]] == ["offset"]

    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name", "").rpartition(":")[2] for s in suites] == TEN
    assert root.get("failures") == "1"
    assert root.get("tests") == str(sum(int(s.get("tests", "0")) for s in suites))
    failing = {s.get("name", "").rpartition(":")[2]: s.get("failures") for s in suites}
    assert failing == {name: "1" if name == "batchnorm" else "0" for name in TEN}
    [failure] = root.iter("failure")
    assert "15 of 15 entries of x disagree" in failure.get("message", "")


def test_the_table_has_a_section_per_layer_and_a_closing_table(ten_bug: Path) -> None:
    """Ten sections, each its layer's report ending in the layer's own final line, then the
    closing table (layer, verdict, entries, worst error, diagnosis) and the run's line."""
    result = gradcheck("run", "--model", str(ten_bug), "--top", "2")
    assert result.exit_code == 1, result.stderr
    lines = result.stdout.splitlines()
    sections = [line for line in lines if line.split("  ")[0].endswith("/10")]
    assert [s.split()[1] for s in sections] == TEN
    assert sum(line.startswith("FAILED: 15 of 21 entries disagree.") for line in lines) == 1
    assert sum(line.startswith("PASSED: all") for line in lines) == 9
    closing = lines[lines.index(next(x for x in lines if x.startswith("Layers"))) :]
    rows = {row.split()[0]: row.split() for row in closing[3:13]}
    assert list(rows) == TEN
    assert rows["batchnorm"][1:3] == ["failed", "21"]
    assert "offset:" in closing[3 + TEN.index("batchnorm")]
    assert rows["conv"][1:3] == ["passed", "121"]
    assert lines[-1] == "FAILED: 1 of 10 layers has a wrong gradient: batchnorm."


def test_github_has_one_annotation_per_failing_layer(ten_bug: Path) -> None:
    """--format github: one ::error for batchnorm (with its file), then the summary."""
    result = gradcheck("run", "--model", str(ten_bug), "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    # The file as the layer's --model names it: relative to the working directory.
    where = os.path.relpath(ten_bug)
    assert lines[0].startswith(f"::error file={where},title=gradcheck%3A batchnorm failed::")
    assert "15 of 15 entries of x disagree" in lines[0]
    assert (
        lines[1]
        == "::error title=gradcheck::FAILED: 1 of 10 layers has a wrong gradient: batchnorm."
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--only", "relu,conv"), ["relu", "conv"]),
        (("--only", "conv,relu"), ["relu", "conv"]),
        (
            ("--skip", "conv,max_pool,dropout"),
            [n for n in TEN if n not in ("conv", "max_pool", "dropout")],
        ),
        (("--only", "relu,conv", "--skip", "conv"), ["relu"]),
    ],
)
def test_only_and_skip_select_layers_in_the_files_order(
    ten: Path, options: tuple[str, ...], expected: list[str]
) -> None:
    result = gradcheck("run", "--model", str(ten), "--format", "json", *options)
    assert result.exit_code == 0, result.stderr
    assert [layer["name"] for layer in document_of(result)["layers"]] == expected


@pytest.fixture
def two_layers(tmp_path: Path) -> Path:
    path = tmp_path / "layers.py"
    path.write_text(TWO_LAYERS, encoding="utf-8")
    return path


def test_a_layer_that_cannot_be_checked_is_its_own_error(
    two_layers: Path, report_validator: Any
) -> None:
    """Layers without inputs or whose code raises are errors of their own, counted, each one
    line on stderr; the others are checked. With no wrong gradient the run exits 2."""
    result = gradcheck("run", "--model", str(two_layers), "--format", "json", "--skip", "wrong")
    assert result.exit_code == 2
    document = document_of(result)
    report_validator.validate(document)
    assert document["verdict"] == "error"
    layers = {layer["name"]: layer for layer in document["layers"]}
    assert layers["good"]["verdict"] == "passed"
    assert layers["unfed"]["verdict"] == "error"
    assert layers["unfed"]["points"] == []
    assert layers["unfed"]["error"].startswith("layers.py:unfed: no value for 'x'")
    assert layers["raises"]["error"] == "layers.py:26: forward raised RuntimeError: boom"
    assert result.stderr.splitlines() == [
        f"gradcheck: error: {layers['unfed']['error']}",
        "gradcheck: error: layers.py:26: forward raised RuntimeError: boom",
    ]


def test_a_wrong_gradient_outranks_a_layer_that_cannot_be_checked(two_layers: Path) -> None:
    """failed > error > inconclusive > passed: a wrong layer makes the run exit 1 even when
    others could not be checked; the final line names both."""
    result = gradcheck("run", "--model", str(two_layers))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == (
        "FAILED: 1 of 4 layers has a wrong gradient: wrong; 2 could not be checked: unfed, raises."
    )


def test_inputs_and_params_go_to_the_layers_that_take_them(
    two_layers: Path, tmp_path: Path
) -> None:
    """--input y=... feeds the one layer with a y (and x from the command line feeds every
    layer with an x); an --input no layer takes is exit 2 naming it."""
    import numpy as np

    np.save(tmp_path / "x.npy", np.array([1.0, -2.0]))
    np.save(tmp_path / "y.npy", np.array([3.0, 4.0]))
    result = gradcheck(
        "run", "--model", str(two_layers), "--format", "json", "--only", "unfed,good",
        "--input", f"x={tmp_path / 'x.npy'}", "--input", f"y={tmp_path / 'y.npy'}",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    layers = {
        layer["name"]: layer["points"][0]["report"] for layer in document_of(result)["layers"]
    }
    assert layers["unfed"]["inputs"]["y"]["source"].endswith("y.npy")
    assert layers["good"]["inputs"]["x"]["shape"] == [2]
    assert list(layers["good"]["inputs"]) == ["x"]
    result = gradcheck(
        "run", "--model", str(two_layers), "--only", "good", "--input", f"y={tmp_path / 'y.npy'}"
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "gradcheck: error: --input y: no layer of layers.py takes it; the layers checked are good\n"
    )


def test_a_named_layer_is_one_report_not_a_document_of_layers(ten: Path) -> None:
    """FILE.py:NAME checks that layer alone: one report, as any single model's, not a
    document of layers."""
    layer = document_of(gradcheck("run", "--model", f"{ten}:affine", "--format", "json"))
    assert "layers" not in layer
    assert layer["model"]["name"] == "affine"
    assert sum(s["entries"] for s in layer["summary"].values()) == 46


def test_a_plain_model_file_is_one_model_not_a_whole_file(model_path: Callable[[str], str]) -> None:
    """A file with forward and backward is one model, checked as one report."""
    result = gradcheck("run", "--model", model_path("dense_tanh"), "--format", "json")
    assert result.exit_code == 0
    assert "layers" not in document_of(result)
    assert document_of(result)["command"] == "run"


def test_the_runner_reads_a_whole_file_once(tmp_path: Path) -> None:
    """The file's top level runs once for all its layers (it is imported once)."""
    counter = tmp_path / "imports.txt"
    source = TWO_LAYERS.replace(
        "import numpy as np\n",
        f"import numpy as np\n\nwith open({str(counter)!r}, 'a') as f:\n    f.write('x')\n",
        1,
    )
    path = tmp_path / "counted.py"
    path.write_text(source, encoding="utf-8")
    request = CheckRequest(InputOptions(model_spec=str(path)), CheckSettings(), only=("good",))
    report = run_command(request, naming=COMMAND_LINE)
    assert isinstance(report, ProjectReport)
    assert report.verdict == "passed"
    assert counter.read_text() == "x"


class _Bar:
    """A stand-in for rich's progress bar: what it was told."""

    def __init__(self) -> None:
        self.updates: list[tuple[float, int, str]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def add_task(self, description: str, total: int) -> int:
        return 0

    def update(self, task: int, *, completed: float, total: int, description: str) -> None:
        self.updates.append((completed, total, description))


def test_progress_names_the_layer_and_point_and_counts_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, past its first second, the bar counts (layer, point) steps, moves within
    a step as its entries are checked, and says which layer and point it is on."""
    import time

    import gradcheck_cli.render.terminal
    from gradcheck_cli.commands.reporting import ProgressReporter

    bar = _Bar()
    monkeypatch.setattr(gradcheck_cli.render.terminal, "progress_bar", lambda: bar)
    reporter = ProgressReporter(True, "checking")
    reporter.enabled = True  # as on a terminal
    reporter.started = time.monotonic() - 2
    reporter.step(1, 4, "affine · point 1/2")
    reporter(5, 10)
    reporter.step(2, 4, "affine · point 2/2")
    reporter(10, 10)
    reporter.step(3, 4, "relu · point 1/2")
    assert bar.updates == [
        (0, 4, "affine · point 1/2"),
        (0.5, 4, "affine · point 1/2"),
        (1, 4, "affine · point 2/2"),
        (2.0, 4, "affine · point 2/2"),
        (2, 4, "relu · point 1/2"),
    ]
