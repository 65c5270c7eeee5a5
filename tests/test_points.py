"""Several input points: `--points K` checks at the given inputs and K-1 drawn ones,
and a gradient wrong only where the examples never go (x < 0) is caught, at a named point
whose inputs can be replayed; a correct layer is flagged at no point."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import document_of, gradcheck

from gradcheck_cli import check_file
from gradcheck_cli.project.points import draw_point, point_rng
from gradcheck_cli.project_report import array_from_document

SEEDS = 20


@pytest.fixture(scope="module")
def models(fixtures_dir: Path) -> Path:
    return fixtures_dir / "models"


def test_one_point_cannot_see_the_negative_branch(models: Path) -> None:
    """The examples are all positive: at them the wrong x < 0 branch is never taken."""
    result = gradcheck("run", "--model", f"{models / 'negative_branch.py'}:elu")
    assert result.exit_code == 0, result.stderr


def test_points_catch_the_negative_branch_and_say_where(
    models: Path, report_validator: Any
) -> None:
    """--points 5: point 1 (the examples) passes, the drawn points fail; the layer's verdict
    names the first failing point, and its inputs are in the JSON (no --output), holding
    negative entries, to be replayed."""
    result = gradcheck(
        "run",
        "--model",
        f"{models / 'negative_branch.py'}:elu",
        "--points",
        "5",
        "--format",
        "json",
    )
    assert result.exit_code == 1, result.stderr
    document = document_of(result)
    report_validator.validate(document)
    assert document["points"] == 5
    [layer] = document["layers"]
    points = layer["points"]
    assert [p["point"] for p in points] == [1, 2, 3, 4, 5]
    assert [p["origin"] for p in points] == ["given", "drawn", "drawn", "drawn", "drawn"]
    assert points[0]["verdict"] == "passed"
    assert points[0]["inputs"] is None
    first_failing = next(p for p in points if p["verdict"] == "failed")
    assert layer["point"] == first_failing["point"] > 1
    x = array_from_document(first_failing["inputs"]["x"])
    assert x.shape == (4, 5)
    assert x.dtype == np.float64
    assert (x < 0).any()
    assert (x > 0).any()
    report = first_failing["report"]
    assert report["inputs"]["x"]["source"] == f"point {first_failing['point']} (drawn)"
    # Exactly the negative entries are wrong (the positive branch is right).
    wrong = {tuple(c["index"]) for c in report["checks"] if not c["passed"]}
    assert wrong == {tuple(int(i) for i in index) for index in np.argwhere(x < 0)}


def test_a_failing_points_inputs_are_saved_next_to_output_and_replay(
    models: Path, tmp_path: Path
) -> None:
    """With --output, each failing drawn point's inputs go to OUTPUT.pointK.npz (atomically,
    named in the report); --inputs replays exactly that check."""
    output = tmp_path / "report.json"
    layer = f"{models / 'negative_branch.py'}:elu"
    result = gradcheck("run", "--model", layer, "--points", "5", "--output", str(output))
    assert result.exit_code == 1, result.stderr
    document = json.loads(output.read_text(encoding="utf-8"))
    points = document["layers"][0]["points"]
    saved = {p["point"]: p["inputs_file"] for p in points if p["inputs_file"]}
    failing = [p["point"] for p in points if p["verdict"] == "failed"]
    assert sorted(saved) == failing
    assert all(p["inputs"] is None for p in points)
    for number, path in saved.items():
        assert path == str(tmp_path / f"report.point{number}.npz")
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        ["report.json", *(Path(p).name for p in saved.values())]
    )
    number = failing[0]
    replay = gradcheck("run", "--model", layer, "--inputs", saved[number], "--format", "json")
    assert replay.exit_code == 1
    again = document_of(replay)
    original = points[number - 1]["report"]
    assert again["f"] == original["f"]
    assert again["summary"] == original["summary"]
    shown = f"{os.path.relpath(models / 'negative_branch.py')}:elu"
    relative = os.path.relpath(saved[number])
    typed = relative if len(relative) < len(saved[number]) else saved[number]
    assert f"replay: gradcheck run --model {shown} --inputs {typed}" in result.stdout


def test_saved_inputs_never_go_over_an_input(models: Path, tmp_path: Path) -> None:
    """A failing point's file that would be an input of the run is refused before anything is
    written: exit 2, --output untouched."""
    output = tmp_path / "report.json"
    output.write_text("earlier\n", encoding="utf-8")
    given = tmp_path / "report.point2.npz"
    np.savez(given, x=np.random.default_rng(0).uniform(0.5, 2.0, (4, 5)))
    before = given.read_bytes()
    result = gradcheck(
        "run", "--model", f"{models / 'negative_branch.py'}:elu", "--points", "2",
        "--inputs", str(given), "--output", str(output),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "refusing to overwrite an input" in result.stderr
    assert "report.point2.npz" in result.stderr
    assert given.read_bytes() == before
    assert output.read_text(encoding="utf-8") == "earlier\n"


def test_points_catch_the_bug_on_at_least_19_of_20_seeds(models: Path) -> None:
    """What --points is for, measured: at --points 5 the bug is caught on at least 19 of 20
    seeds (BENCHMARKS.md has the figure)."""
    path = models / "negative_branch.py"
    caught = [s for s in range(SEEDS) if check_file(path, points=5, seed=s).verdict == "failed"]
    assert len(caught) >= 19, caught


def test_the_correct_twin_is_flagged_at_no_point_on_any_seed(models: Path) -> None:
    """The same layer with its x < 0 branch right: 20 seeds x 5 points, every one passes."""
    path = models / "negative_branch_fixed.py"
    verdicts = {
        (seed, point.point, point.verdict)
        for seed in range(SEEDS)
        for layer in check_file(path, points=5, seed=seed).layers
        for point in layer.points
    }
    assert {v for _, _, v in verdicts} == {"passed"}
    assert len(verdicts) == SEEDS * 5


@pytest.mark.parametrize(
    "seeds",
    [
        pytest.param(range(2), id="2-seeds"),
        pytest.param(range(2, SEEDS), id="18-more", marks=pytest.mark.slow),
    ],
)
def test_no_correct_layer_is_flagged_at_any_point(models: Path, seeds: range) -> None:
    """The ten correct layers at 5 points each: no failure, nothing inconclusive, no error."""
    for seed in seeds:
        report = check_file(models / "cs231n_layers.py", points=5, seed=seed)
        found = [(x.name, p.point, p.verdict) for x in report.layers for p in x.points]
        assert len(found) == 50
        assert [f for f in found if f[2] != "passed"] == [], seed


def test_drawn_points_keep_shapes_dtypes_and_labels(models: Path) -> None:
    """softmax_loss's labels stay as given at every point; its scores are drawn, with both
    signs, in the given dtype; float32 stays float32."""
    report = check_file(f"{models / 'cs231n_layers.py'}:softmax_loss", points=3, dtype="float32")
    [layer] = report.layers
    given = layer.points[0].arrays
    for point in layer.points[1:]:
        assert point.origin == "drawn"
        assert point.arrays["y"] is given["y"]
        x = point.arrays["x"]
        assert x.shape == given["x"].shape == (4, 5)
        assert x.dtype == np.float32
        assert (x < 0).any()
        assert (x > 0).any()
        assert not np.array_equal(x, given["x"])
        assert point.report is not None
        assert point.report.inputs["y"].source == "example_inputs()"


def test_points_are_seeded_per_layer_and_point() -> None:
    """The same seed, layer and point draw the same inputs; another seed or point others."""
    given = {"x": np.linspace(0.5, 2.0, 6), "y": np.arange(3)}
    first, origin = draw_point(given, point_rng(0, "elu", 2), None)
    assert origin == "drawn"
    again, _ = draw_point(given, point_rng(0, "elu", 2), None)
    assert np.array_equal(first["x"], again["x"])
    for other in (point_rng(1, "elu", 2), point_rng(0, "elu", 3), point_rng(0, "relu", 2)):
        assert not np.array_equal(first["x"], draw_point(given, other, None)[0]["x"])
    # Magnitudes like the given ones: mean |x| 1.25.
    many, _ = draw_point({"x": np.linspace(0.5, 2.0, 10_000)}, point_rng(0, "elu", 2), None)
    assert abs(float(np.abs(many["x"]).mean()) - 1.25) < 0.1
    assert abs(float((many["x"] < 0).mean()) - 0.5) < 0.05


SAMPLED = """\
import numpy as np


def elu_forward(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))), x


def elu_backward(dout, cache):
    return dout * np.where(cache > 0, 1.0, 1.0)  # wrong for x < 0


def elu_example_inputs():
    return {"x": np.full((2, 3), 1.5)}


def elu_sample_inputs(rng):
    return {"x": -rng.uniform(0.5, 1.0, size=SHAPE)}
"""


@pytest.mark.parametrize(
    ("shape", "verdict"), [("(2, 3)", "failed"), ("(3,)", "error")], ids=["shaped", "misshapen"]
)
def test_sample_inputs_draws_the_points_when_the_file_defines_it(
    tmp_path: Path, shape: str, verdict: str
) -> None:
    """NAME_sample_inputs(rng) gives points 2.. (here all negative: the bug shows); a point
    of another shape is that point's error, saying so."""
    path = tmp_path / "sampled.py"
    path.write_text(SAMPLED.replace("SHAPE", shape), encoding="utf-8")
    [layer] = check_file(path, points=3).layers
    assert [p.origin for p in layer.points] == ["given", "sample_inputs", "sample_inputs"]
    assert [p.verdict for p in layer.points] == ["passed", verdict, verdict]
    second = layer.points[1]
    if verdict == "failed":
        assert (second.arrays["x"] < 0).all()
        expected = -point_rng(0, "elu", 2).uniform(0.5, 1.0, size=(2, 3))
        assert np.array_equal(second.arrays["x"], expected)
    else:
        assert second.error == (
            "at point 2 (sample_inputs): sampled.py:elu: elu_sample_inputs(rng) gave x of "
            "shape (3,); the given x has shape (2, 3), and every point has the given inputs' "
            "shapes"
        )
        assert layer.verdict == "error"


def test_a_built_in_model_at_several_points() -> None:
    """The seed's model at 3 points: its X and W drawn like the seed's; all pass."""
    result = gradcheck("run", "--points", "3", "--format", "json")
    assert result.exit_code == 0, result.stderr
    [layer] = document_of(result)["layers"]
    assert [p["verdict"] for p in layer["points"]] == ["passed"] * 3
    assert layer["points"][2]["report"]["inputs"]["W"]["source"] == "point 3 (drawn)"
