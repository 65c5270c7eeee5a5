"""Loading arrays (--input, --inputs) and the --x / --w matrices from .csv, .npy and .npz files,
and the errors for bad ones: malformed, forged, too big for memory, symlink loops."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from numpy.typing import NDArray

from gradcheck_cli.errors import InputError
from gradcheck_cli.subject.arrays.budget import (
    MEMORY_BUDGET_FALLBACK,
    MEMORY_BUDGET_FLOOR,
    MEMORY_BUDGET_VARIABLE,
    memory_budget,
)
from gradcheck_cli.subject.arrays.files import LoadError
from gradcheck_cli.subject.arrays.loading import (
    LoadedArray,
    cast_to_dtype,
    file_of_spec,
    load_archive,
    load_array,
)
from gradcheck_cli.subject.options import InputOptions, load_subject
from gradcheck_cli.subject.seed import seed_matrices

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(autouse=True)
def _default_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget set in the developer's environment must not change what these tests see."""
    monkeypatch.delenv(MEMORY_BUDGET_VARIABLE, raising=False)


def write_text(directory: Path, name: str, text: str) -> str:
    """Write `text` to directory/name and return the path as the string a user would give."""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def save(matrix: NDArray[Any], directory: Path, fmt: str) -> str:
    """Save `matrix` the way numpy users do and return the spec that loads it back."""
    if fmt == "csv":
        path = directory / "m.csv"
        np.savetxt(path, matrix, fmt="%.17g", delimiter=",")
    elif fmt == "npy":
        path = directory / "m.npy"
        np.save(path, matrix)
    else:
        path = directory / "m.npz"
        np.savez(path, only=matrix)
    return str(path)


def load_error(spec: str, *, name: str = "X") -> str:
    """The message of the LoadError that loading `spec` for --x (or --w) raises."""
    with pytest.raises(LoadError) as caught:
        load_array(spec, option=f"--{name.lower()}")
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- what loads -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "npy", "npz"])
def test_numpy_written_file_loads_back_bit_for_bit(tmp_path: Path, fmt: str) -> None:
    """A matrix saved by numpy (CSV with %.17g) loads back with identical bits, as float64."""
    matrix = np.random.default_rng(0).standard_normal((4, 3)) * 10.0 ** np.arange(-6, 6).reshape(
        4, 3
    )
    matrix[0, 0], matrix[1, 1], matrix[2, 2] = -0.0, 5e-324, -1.7976931348623157e308
    loaded = load_array(save(matrix, tmp_path, fmt), option="--x")
    assert loaded.array.dtype == np.float64
    assert loaded.array.shape == (4, 3)
    assert loaded.array.tobytes() == matrix.tobytes()


@settings(max_examples=examples(60), deadline=None)
@given(
    matrix=arrays(
        np.float64,
        array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(allow_nan=False, allow_infinity=False),
    ),
    fmt=st.sampled_from(["csv", "npy", "npz"]),
)
def test_any_finite_matrix_round_trips(matrix: NDArray[np.float64], fmt: str) -> None:
    """Any finite float64 matrix (subnormals and -0.0 included) of any 2-D shape survives
    save-then-load exactly, as float64."""
    with tempfile.TemporaryDirectory() as directory:
        loaded = load_array(save(matrix, Path(directory), fmt), option="--w")
    assert loaded.array.dtype == np.float64
    assert loaded.array.shape == matrix.shape
    assert np.ascontiguousarray(loaded.array).tobytes() == np.ascontiguousarray(matrix).tobytes()


def test_seed_fixtures_equal_builtin_seed() -> None:
    """fixtures/seed_X.csv and seed_W.csv hold exactly the built-in seed matrices."""
    seed_x, seed_w = seed_matrices()
    loaded_x = load_array(str(FIXTURES / "seed_X.csv"), option="--x")
    loaded_w = load_array(str(FIXTURES / "seed_W.csv"), option="--w")
    np.testing.assert_array_equal(loaded_x.array, seed_x)
    np.testing.assert_array_equal(loaded_w.array, seed_w)
    assert loaded_x.array.shape == (3, 3)
    assert loaded_w.array.shape == (3, 2)


def test_csv_source_is_the_path_as_given(tmp_path: Path) -> None:
    """The source of a CSV matrix is the path string exactly as the user gave it."""
    spec = write_text(tmp_path, "x.csv", "1,2\n")
    assert load_array(spec, option="--x").source == spec


def test_single_row_csv_is_one_by_k(tmp_path: Path) -> None:
    """A one-line CSV is a (1, k) matrix, not a vector."""
    loaded = load_array(write_text(tmp_path, "row.csv", "1,2,3\n"), option="--x")
    np.testing.assert_array_equal(loaded.array, [[1.0, 2.0, 3.0]])
    assert loaded.array.shape == (1, 3)


def test_single_column_csv_is_n_by_one(tmp_path: Path) -> None:
    """A one-column CSV is an (n, 1) matrix."""
    loaded = load_array(write_text(tmp_path, "col.csv", "1\n2\n3\n"), option="--w")
    assert loaded.array.shape == (3, 1)
    np.testing.assert_array_equal(loaded.array[:, 0], [1.0, 2.0, 3.0])


def test_single_number_csv_is_one_by_one(tmp_path: Path) -> None:
    """A CSV holding one number is a (1, 1) matrix."""
    loaded = load_array(write_text(tmp_path, "one.csv", "4.5"), option="--w")
    assert loaded.array.shape == (1, 1)
    assert loaded.array[0, 0] == 4.5


def test_csv_blank_lines_spaces_crlf_and_bom_are_accepted(tmp_path: Path) -> None:
    """Blank (or all-space) lines, spaces around cells, CRLF and a UTF-8 BOM do not matter."""
    path = tmp_path / "messy.csv"
    path.write_bytes(b"\xef\xbb\xbf 1 , 2\r\n\r\n   \r\n3,4 \r\n\n\n  \n")
    loaded = load_array(str(path), option="--x")
    np.testing.assert_array_equal(loaded.array, [[1.0, 2.0], [3.0, 4.0]])


def test_npz_with_one_array_needs_no_key(tmp_path: Path) -> None:
    """An .npz holding one array loads it; the source names the array as path:key."""
    np.savez(tmp_path / "w.npz", weights=np.eye(2))
    loaded = load_array(str(tmp_path / "w.npz"), option="--w")
    np.testing.assert_array_equal(loaded.array, np.eye(2))
    assert loaded.source == f"{tmp_path / 'w.npz'}:weights"


def test_npz_key_selects_one_of_several_arrays(tmp_path: Path) -> None:
    """`file.npz:key` picks that array out of several."""
    np.savez(tmp_path / "m.npz", X=np.ones((2, 3)), W=np.full((3, 1), 7.0))
    spec = f"{tmp_path / 'm.npz'}:W"
    loaded = load_array(spec, option="--w")
    np.testing.assert_array_equal(loaded.array, np.full((3, 1), 7.0))
    assert loaded.source == spec


def test_colon_splits_off_a_key_only_after_npz(tmp_path: Path) -> None:
    """A ':' elsewhere in a path is part of the path, not a key separator."""
    directory = tmp_path / "run:1"
    directory.mkdir()
    spec = write_text(directory, "x.csv", "1,2\n")
    assert load_array(spec, option="--x").source == spec
    np.savez(directory / "m.npz", a=np.ones((1, 1)))
    assert load_array(f"{directory / 'm.npz'}:a", option="--x").source == f"{directory}/m.npz:a"


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    """X.CSV is read as CSV."""
    assert load_array(write_text(tmp_path, "X.CSV", "1,2\n"), option="--x").array.shape == (1, 2)


# --- file-level errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a LoadError naming it and the option."""
    spec = str(tmp_path / "nope.csv")
    assert load_error(spec) == f"{spec}: no such file (given to --x)"


def test_option_in_messages_follows_name(tmp_path: Path) -> None:
    """name="W" makes messages speak of --w."""
    spec = str(tmp_path / "nope.npy")
    assert load_error(spec, name="W") == f"{spec}: no such file (given to --w)"


def test_directory(tmp_path: Path) -> None:
    """A directory given as a matrix file is refused by name."""
    (tmp_path / "d.csv").mkdir()
    spec = str(tmp_path / "d.csv")
    assert load_error(spec) == f"{spec}: is a directory (--x expects a file)"


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".npz"])
def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """A file that cannot be opened for lack of permission says so (simulated: we run as root)."""
    target = tmp_path / f"secret{suffix}"
    target.write_text("1,2\n")
    real_open = Path.open

    def refusing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing_open)
    message = load_error(str(target))
    assert message == f"{target}: permission denied, cannot read the file (given to --x)"


@pytest.mark.parametrize(("name", "shown"), [("x.txt", "extension '.txt'"), ("x", "no extension")])
def test_unknown_extension_names_the_supported_ones(tmp_path: Path, name: str, shown: str) -> None:
    """An unsupported extension is refused with the list of supported ones."""
    spec = write_text(tmp_path, name, "1,2\n")
    assert load_error(spec) == (
        f"{spec}: unsupported file type ({shown}); --x expects a file ending in "
        ".csv, .npy or .npz (.npz may be followed by :KEY)"
    )


# --- CSV content errors --------------------------------------------------------------------------


def test_non_numeric_cell_names_line_column_and_text(tmp_path: Path) -> None:
    """A non-numeric cell is reported with its 1-based line, column and text."""
    spec = write_text(tmp_path, "x.csv", "1,2\n3,oops\n")
    assert load_error(spec) == (
        f"{spec}: line 2, column 2: 'oops' is not a number (--x expects comma-separated numbers)"
    )


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    """Line numbers are the file's own, blank lines included."""
    spec = write_text(tmp_path, "x.csv", "\n1,2,3\n\n   \n4,5,x7\n")
    assert load_error(spec).startswith(f"{spec}: line 5, column 3: 'x7' is not a number")


@pytest.mark.parametrize(
    "text",
    ["a,b\n", "a,b\n1,2\n3,4\n"],
    ids=["header-only", "header-then-numbers"],
)
def test_header_line_is_refused(tmp_path: Path, text: str) -> None:
    """A line of column names is not supported and is reported as line 1, column 1."""
    spec = write_text(tmp_path, "x.csv", text)
    assert load_error(spec) == (
        f"{spec}: line 1, column 1: 'a' is not a number "
        "(--x expects comma-separated numbers; header lines are not supported)"
    )


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [("1,2,\n", 1, 3), ("1,,2\n", 1, 2), ("1,2\n ,4\n", 2, 1)],
    ids=["trailing-comma", "double-comma", "blank-cell"],
)
def test_empty_cell(tmp_path: Path, text: str, line: int, column: int) -> None:
    """An empty cell is reported with its line and column."""
    spec = write_text(tmp_path, "x.csv", text)
    assert load_error(spec) == (
        f"{spec}: line {line}, column {column}: empty cell (--x expects comma-separated numbers)"
    )


@pytest.mark.parametrize("cell", ["1;2", "0x10", "1_000", "١"])
def test_numbers_numpy_refuses_are_located(tmp_path: Path, cell: str) -> None:
    """Cells that Python's float() might take but numpy's CSV reader refuses are still located."""
    spec = write_text(tmp_path, "x.csv", f"1,2\n3,{cell}\n")
    assert load_error(spec).startswith(f"{spec}: line 2, column 2: {cell!r} is not a number")


def test_long_cell_is_shortened(tmp_path: Path) -> None:
    """A very long bad cell is cut so that the message stays short."""
    spec = write_text(tmp_path, "x.csv", "1," + "z" * 500 + "\n")
    message = load_error(spec)
    assert f"'{'z' * 37}...' is not a number" in message
    assert len(message) < len(spec) + 120


@pytest.mark.parametrize(
    ("text", "line", "got"),
    [("1,2\n3,4,5\n", 2, 3), ("1,2\n\n3\n", 3, 1)],
    ids=["too-many", "too-few"],
)
def test_ragged_row(tmp_path: Path, text: str, line: int, got: int) -> None:
    """A row with a different number of columns names its line, its count and the expected one."""
    spec = write_text(tmp_path, "x.csv", text)
    assert load_error(spec) == (
        f"{spec}: line {line} has {got} columns, expected 2 like line 1 "
        "(--x expects the same number of columns on every line)"
    )


@pytest.mark.parametrize(
    ("cell", "kind"),
    [("nan", "NaN"), ("NaN", "NaN"), ("inf", "inf"), ("-inf", "-inf"), ("1e400", "inf")],
)
def test_csv_non_finite_names_entry_line_and_column(tmp_path: Path, cell: str, kind: str) -> None:
    """NaN, ±inf and overflowing numbers name the entry [i, j] and the CSV line and column."""
    spec = write_text(tmp_path, "x.csv", f"1,2,3\n\n4,5,6\n7,{cell},9\n")
    assert load_error(spec) == (
        f"{spec}: line 4, column 2: {cell!r} makes entry [2, 1] {kind} (--x expects finite numbers)"
    )


def test_csv_of_blank_lines_only(tmp_path: Path) -> None:
    """A CSV with only blank lines holds no numbers and says so."""
    spec = write_text(tmp_path, "x.csv", "\n  \n\n")
    assert load_error(spec) == (
        f"{spec}: holds only blank lines, no numbers (--x expects comma-separated numbers)"
    )


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    """Binary or non-UTF-8 bytes in a CSV are reported as such, not as a crash."""
    path = tmp_path / "x.csv"
    path.write_bytes(b"1,2\n3,\xff\n")
    assert load_error(str(path)) == (
        f"{path}: is not UTF-8 text (--x expects comma-separated numbers)"
    )


# --- .npy / .npz content errors ----------------------------------------------------------------


def test_complex_array(tmp_path: Path) -> None:
    """A complex array is refused rather than silently dropping the imaginary part."""
    spec = save(np.ones((2, 2), dtype=np.complex128), tmp_path, "npy")
    assert load_error(spec) == (
        f"{spec}: holds complex numbers (complex128) (--x expects real numbers)"
    )


@pytest.mark.parametrize("fmt", ["npy", "npz"])
@pytest.mark.parametrize(("value", "kind"), [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_array_non_finite_names_first_entry(
    tmp_path: Path, fmt: str, value: float, kind: str
) -> None:
    """The first NaN or ±inf in row-major order is named by its [i, j]."""
    matrix = np.ones((3, 4))
    matrix[1, 2] = value
    matrix[2, 0] = np.nan
    spec = save(matrix, tmp_path, fmt)
    source = f"{spec}:only" if fmt == "npz" else spec
    assert load_error(spec) == f"{source}: entry [1, 2] is {kind} (--x expects finite numbers)"


def test_npz_with_several_arrays_and_no_key_lists_them(tmp_path: Path) -> None:
    """Several arrays and no key: the message lists the keys and how to choose one."""
    np.savez(tmp_path / "m.npz", X=np.ones((1, 1)), W=np.ones((1, 1)))
    spec = str(tmp_path / "m.npz")
    assert load_error(spec, name="W") == (
        f"{spec}: holds 2 arrays ('X', 'W'); choose one with --w {spec}:KEY"
    )


def test_npz_missing_key_lists_available(tmp_path: Path) -> None:
    """A key the archive lacks is named, with the keys it has."""
    np.savez(tmp_path / "m.npz", X=np.ones((1, 1)), W=np.ones((1, 1)))
    path = str(tmp_path / "m.npz")
    assert load_error(f"{path}:B") == (
        f"{path}: no array named 'B'; the archive holds 'X', 'W' (given to --x)"
    )


def test_npz_without_arrays(tmp_path: Path) -> None:
    """An archive with no arrays is refused."""
    np.savez(tmp_path / "m.npz")
    spec = str(tmp_path / "m.npz")
    assert load_error(spec) == f"{spec}: the archive holds no arrays (--x expects one)"


def test_truncated_npy(tmp_path: Path) -> None:
    """A .npy cut short is refused as invalid, not loaded partly."""
    spec = save(np.ones((10, 10)), tmp_path, "npy")
    data = Path(spec).read_bytes()
    Path(spec).write_bytes(data[:200])
    message = load_error(spec)
    assert message.startswith(f"{spec}: not a valid .npy file: ")
    assert message.endswith("(given to --x)")


# --- pickles are refused, never unpickled -------------------------------------------------------


class _Canary:
    """Unpickling this creates the file at `path`: proof that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.path,))


def _write_pickle_file(kind: str, directory: Path, canary: Path) -> str:
    if kind == "raw-pickle.npy":
        path = directory / "evil.npy"
        path.write_bytes(pickle.dumps(_Canary(canary), protocol=4))
    elif kind == "object-array.npy":
        path = directory / "evil.npy"
        np.save(path, np.array([[_Canary(canary)]], dtype=object), allow_pickle=True)
    else:
        path = directory / "evil.npz"
        np.savez(path, a=np.array([[_Canary(canary)]], dtype=object), allow_pickle=True)
    return str(path)


@pytest.mark.parametrize("kind", ["raw-pickle.npy", "object-array.npy", "object-array.npz"])
def test_canary_pickle_files_are_live(tmp_path: Path, kind: str) -> None:
    """Control for the test below: loading these files with pickles allowed runs the canary."""
    canary = tmp_path / "unpickled"
    spec = _write_pickle_file(kind, tmp_path, canary)
    loaded = np.load(spec, allow_pickle=True)
    if kind.endswith(".npz"):
        with loaded as archive:
            assert archive["a"].shape == (1, 1)
    assert canary.exists()


@pytest.mark.parametrize("kind", ["raw-pickle.npy", "object-array.npy", "object-array.npz"])
def test_pickled_data_is_refused_and_never_unpickled(tmp_path: Path, kind: str) -> None:
    """Pickles and object arrays are refused with a clear message and are never unpickled."""
    canary = tmp_path / "unpickled"
    spec = _write_pickle_file(kind, tmp_path, canary)
    message = load_error(spec)
    assert message.startswith(f"{spec}")
    assert "pickle" in message
    assert "refused" in message
    assert not canary.exists()


# --- the built-in models' X and W ------------------------------------------------------------


def test_x_and_w_that_do_not_fit_name_both_sources_and_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mismatch names both sources, both shapes and which dimensions disagree."""
    monkeypatch.chdir(tmp_path)
    write_text(tmp_path, "w4.csv", "0,0\n" * 4)
    with pytest.raises(InputError) as caught:
        load_subject(InputOptions(w_path="w4.csv"))
    assert str(caught.value) == (
        "X (3, 3) from builtin:seed and W (4, 2) from w4.csv do not fit: "
        "X's 3 columns must equal W's 4 rows"
    )


# --- load_array: any shape, any number of inputs ------------------------------------------------


def array_error(spec: str, *, option: str = "--input b") -> str:
    """The message of the LoadError that load_array(spec) raises; it must be one line."""
    with pytest.raises(LoadError) as caught:
        load_array(spec, option=option)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 3), (1, 2, 1, 2)])
@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_load_array_keeps_any_shape(tmp_path: Path, fmt: str, shape: tuple[int, ...]) -> None:
    """A .npy/.npz array of any rank, 0-D included, loads with its shape and exact values."""
    array = np.random.default_rng(0).standard_normal(shape)
    spec = save(array, tmp_path, fmt)
    loaded = load_array(spec, option="--input b")
    assert isinstance(loaded, LoadedArray)
    assert loaded.array.shape == shape
    assert loaded.array.dtype == np.float64
    assert loaded.array.tobytes() == array.tobytes()
    assert loaded.source == (f"{spec}:only" if fmt == "npz" else spec)


def test_load_array_of_a_csv_is_two_dimensional(tmp_path: Path) -> None:
    """A CSV always gives a 2-D float64 array: one line is (1, k), for the caller to flatten."""
    loaded = load_array(write_text(tmp_path, "b.csv", "1,2,3\n"), option="--input b")
    assert loaded.array.shape == (1, 3)
    assert loaded.array.dtype == np.float64
    np.testing.assert_array_equal(loaded.array, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(
    ("stored", "loaded_as"),
    [
        (np.float16, np.float64),
        (np.float32, np.float64),
        (np.dtype(">f8"), np.float64),
        (np.int8, np.int64),
        (np.int32, np.int64),
        (np.uint16, np.int64),
        (np.uint64, np.int64),
        (np.bool_, np.bool_),
    ],
    ids=["float16", "float32", "big-endian-float64", "int8", "int32", "uint16", "uint64", "bool"],
)
def test_load_array_dtypes(tmp_path: Path, stored: Any, loaded_as: Any) -> None:
    """Floats are widened exactly to float64; integers become int64 (labels); bools stay bool."""
    original = np.array([[0, 1, 1], [1, 0, 1]]).astype(stored)
    np.save(tmp_path / "m.npy", original)
    loaded = load_array(str(tmp_path / "m.npy"), option="--input labels")
    assert loaded.array.dtype == np.dtype(loaded_as)
    np.testing.assert_array_equal(loaded.array, original)


def test_load_array_float32_values_are_widened_exactly(tmp_path: Path) -> None:
    """float32 0.1 stays float32's 0.1 (0.10000000149011612), not float64's 0.1."""
    np.save(tmp_path / "m.npy", np.array([0.1], dtype=np.float32))
    assert load_array(str(tmp_path / "m.npy"), option="--x").array[0] == 0.10000000149011612


def test_load_array_names_the_option(tmp_path: Path) -> None:
    """Messages name the option load_array was given, such as --input b."""
    spec = str(tmp_path / "b.npy")
    assert array_error(spec) == f"{spec}: no such file (given to --input b)"
    empty = write_text(tmp_path, "e.npy", "")
    assert array_error(empty) == f"{empty}: the file is empty (--input b expects a numeric array)"


@pytest.mark.parametrize(
    ("shape", "index", "entry"),
    [((2, 3, 4), (1, 0, 2), "entry [1, 0, 2]"), ((5,), (3,), "entry [3]"), ((), (), "the value")],
    ids=["3-D", "1-D", "0-D"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_load_array_non_finite_names_the_full_index(
    tmp_path: Path, shape: tuple[int, ...], index: tuple[int, ...], entry: str, dtype: Any
) -> None:
    """A NaN is named by its full N-D index (`the value` for a 0-D array), in any float dtype."""
    array = np.ones(shape, dtype=dtype)
    array[index] = np.nan
    spec = save(array, tmp_path, "npy")
    assert array_error(spec) == f"{spec}: {entry} is NaN (--input b expects finite numbers)"


def test_load_array_refuses_complex(tmp_path: Path) -> None:
    """Complex arrays are refused, naming the option."""
    spec = save(np.ones(3, dtype=np.complex64), tmp_path, "npy")
    assert array_error(spec) == (
        f"{spec}: holds complex numbers (complex64) (--input b expects real numbers)"
    )


@pytest.mark.parametrize("kind", ["raw-pickle.npy", "object-array.npy", "object-array.npz"])
def test_load_array_refuses_pickles_without_unpickling(tmp_path: Path, kind: str) -> None:
    """load_array refuses pickles and object arrays for --input as for --x; nothing is unpickled."""
    canary = tmp_path / "unpickled"
    spec = _write_pickle_file(kind, tmp_path, canary)
    message = array_error(spec)
    assert "refused, pickles are never loaded" in message
    assert "(--input b expects a numeric array)" in message
    assert not canary.exists()


@pytest.mark.parametrize("shape", [(0,), (2, 0, 3)])
@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_load_array_refuses_empty_arrays(tmp_path: Path, fmt: str, shape: tuple[int, ...]) -> None:
    """An array with no entries is refused, naming its shape."""
    spec = save(np.ones(shape), tmp_path, fmt)
    source = f"{spec}:only" if fmt == "npz" else spec
    assert array_error(spec) == (
        f"{source}: is empty, shape {shape} (--input b expects a numeric array)"
    )


def test_load_array_refuses_uint64_beyond_int64(tmp_path: Path) -> None:
    """A uint64 label too large for int64 is refused rather than wrapped to a negative number."""
    spec = save(np.array([1, 2**64 - 1], dtype=np.uint64), tmp_path, "npy")
    assert array_error(spec) == (
        f"{spec}: entry [1] = 18446744073709551615 is too large for int64 "
        "(largest 9223372036854775807) (given to --input b)"
    )


@pytest.mark.skipif(
    bool(np.finfo(np.longdouble).max <= np.finfo(np.float64).max),
    reason="long double is float64 on this platform",
)
def test_load_array_refuses_long_double_beyond_float64(tmp_path: Path) -> None:
    """A long double too large for float64 is refused, not turned into inf."""
    array = np.ones((2, 2), dtype=np.longdouble)
    array[1, 0] = np.longdouble("1e400")
    spec = save(array, tmp_path, "npy")
    assert array_error(spec) == (
        f"{spec}: entry [1, 0] = 1e+400 overflows float64 (largest 1.7976931348623157e+308) "
        "and would become inf (given to --input b)"
    )


def test_file_of_spec_drops_the_npz_key() -> None:
    """file_of_spec names the file a spec reads: the .npz without :KEY, anything else as is."""
    assert file_of_spec("run:1/a.npz:w") == Path("run:1/a.npz")
    assert file_of_spec("run:1/a.csv") == Path("run:1/a.csv")


# --- load_archive (--inputs) --------------------------------------------------------------------


def test_load_archive_loads_every_key_in_order(tmp_path: Path) -> None:
    """Every array of the archive, in the archive's order, each with its own shape and source."""
    path = tmp_path / "inputs.npz"
    arrays = {"x": np.ones((2, 3)), "w": np.arange(3.0), "b": np.array(0.5), "y": np.arange(2)}
    np.savez(path, allow_pickle=False, **arrays)
    loaded = load_archive(str(path))
    assert list(loaded) == ["x", "w", "b", "y"]
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key].array, array)
        assert loaded[key].array.shape == array.shape
        assert loaded[key].source == f"{path}:{key}"
    assert loaded["y"].array.dtype == np.int64


def test_load_archive_errors_name_the_member_and_option(tmp_path: Path) -> None:
    """A bad array in the archive is named path:key, with the option --inputs."""
    path = tmp_path / "inputs.npz"
    bad = np.ones((2, 2))
    bad[0, 1] = np.inf
    np.savez(path, x=np.ones(2), w=bad)
    with pytest.raises(LoadError) as caught:
        load_archive(str(path))
    assert str(caught.value) == f"{path}:w: entry [0, 1] is inf (--inputs expects finite numbers)"


def test_load_archive_refuses_other_files_and_keys(tmp_path: Path) -> None:
    """--inputs takes a whole .npz: another extension, a :KEY or an empty archive is refused."""
    csv = write_text(tmp_path, "x.csv", "1\n")
    np.savez(tmp_path / "none.npz")
    np.savez(tmp_path / "a.npz", x=np.ones(1))
    cases = {
        csv: f"{csv}: unsupported file type (extension '.csv'); --inputs expects a file ending "
        "in .npz",
        f"{tmp_path}/a.npz:x": f"{tmp_path}/a.npz:x: --inputs takes a whole .npz archive, every "
        f"array in it; to give one array, use --input NAME={tmp_path}/a.npz:x",
        f"{tmp_path}/none.npz": f"{tmp_path}/none.npz: the archive holds no arrays "
        "(--inputs expects at least one)",
    }
    for spec, expected in cases.items():
        with pytest.raises(LoadError) as caught:
            load_archive(spec)
        assert str(caught.value) == expected


def test_npz_key_listing_is_capped(tmp_path: Path) -> None:
    """An archive of many arrays lists ten keys and counts the rest: the message stays short."""
    np.savez(tmp_path / "m.npz", allow_pickle=False, **{f"k{i}": np.ones(1) for i in range(25)})
    spec = str(tmp_path / "m.npz")
    listed = ", ".join(f"'k{i}'" for i in range(10))
    assert load_error(spec) == (
        f"{spec}: holds 25 arrays ({listed} and 15 more); choose one with --x {spec}:KEY"
    )


# --- cast_to_dtype (--dtype) --------------------------------------------------------------------


def test_cast_to_float32_rounds_floats() -> None:
    """Float inputs are cast to the check's dtype."""
    cast = cast_to_dtype(LoadedArray(np.array([0.1, 2.0]), "x.npy"), "float32", option="--x")
    assert cast.dtype == np.float32
    np.testing.assert_array_equal(cast, np.array([0.1, 2.0], dtype=np.float32))


@pytest.mark.parametrize("array", [np.arange(3), np.array([True, False])], ids=["int", "bool"])
def test_cast_leaves_labels_and_masks_alone(array: NDArray[Any]) -> None:
    """Integer and boolean arrays are returned as they are, whatever the dtype of the check."""
    loaded = LoadedArray(array, "labels.npy")
    assert cast_to_dtype(loaded, "float32", option="--input labels") is array


@pytest.mark.parametrize(
    ("array", "entry"),
    [(np.array([[1.0, 1e39], [-1e39, 0.0]]), "entry [0, 1] = 1e+39"), (np.array(-4e38), None)],
    ids=["2-D", "0-D"],
)
def test_cast_refuses_values_that_overflow_float32(array: NDArray[Any], entry: str | None) -> None:
    """A value finite in the file but inf in float32 is refused, naming source, entry, dtype."""
    with pytest.raises(LoadError) as caught:
        cast_to_dtype(LoadedArray(array, "big.npy"), "float32", option="--input b")
    shown = entry if entry is not None else "the value -4e+38"
    assert str(caught.value) == (
        f"big.npy: {shown} overflows float32 (largest 3.4028235e+38) and would become inf "
        "(given to --input b with --dtype float32)"
    )


def test_cast_to_float64_keeps_values() -> None:
    """Casting a float64 input to float64 changes nothing."""
    array = np.array([1e300, -5e-324])
    cast = cast_to_dtype(LoadedArray(array, "x.npy"), "float64", option="--x")
    assert cast.tobytes() == array.tobytes()


def test_cast_to_an_unknown_dtype_is_a_programming_error() -> None:
    """Only float64, float32, float16 and bfloat16 (rounded to it, held as float64) are dtypes
    of a check; anything else is the caller's bug."""
    with pytest.raises(ValueError, match="float8"):
        cast_to_dtype(LoadedArray(np.ones(1), "x.npy"), "float8", option="--x")


# --- hostile files: sizes and memory ------------------------------------------------------------


def write_forged_npy(handle: Any, shape: tuple[int, ...], data: bytes) -> None:
    """A .npy header declaring `shape` of float64, followed by `data` (far less than declared)."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
    handle.write(data)


def test_forged_npz_member_header_is_refused(tmp_path: Path) -> None:
    """An .npz member whose header claims more than the member holds is refused by name."""
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("a.npy", "w") as member:
        write_forged_npy(member, (10**6, 10**6), bytes(64))
    assert array_error(str(path)) == (
        f"{path}:a: not a valid .npy array: its header declares shape (1000000, 1000000) of "
        "float64, 8000000000000 bytes (7.28 TiB) of data, but the member holds 64 bytes "
        "(given to --input b)"
    )


def test_zip_bomb_is_refused_before_inflating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small .npz whose member inflates past the budget is refused without inflating it."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, z=np.zeros(2**20))  # 8 MiB of zeros, a few KiB compressed
    assert path.stat().st_size < 64 * 1024
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, "1M")

    def no_inflating(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the member was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_inflating)
    assert load_error(str(path)) == (
        f"{path}:z: inflates to 8 MiB, more than the memory budget of 1 MiB; "
        f"set {MEMORY_BUDGET_VARIABLE} to allow more (given to --x)"
    )


@pytest.mark.parametrize(("dtype", "needed"), [(np.float64, "1.53 MiB"), (np.float32, "2.29 MiB")])
def test_array_beyond_the_budget_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: Any, needed: str
) -> None:
    """An honest array needing more than the budget (with its float64 copy) is refused."""
    spec = save(np.zeros((200, 1000), dtype=dtype), tmp_path, "npy")
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, "1M")
    assert array_error(spec) == (
        f"{spec}: needs {needed} to load (shape (200, 1000) of {np.dtype(dtype)}), more than "
        f"the memory budget of 1 MiB; set {MEMORY_BUDGET_VARIABLE} to allow more "
        "(given to --input b)"
    )


def test_archive_beyond_the_budget_together_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--inputs: arrays that each fit the budget but not together are refused, by total."""
    path = tmp_path / "inputs.npz"
    np.savez(path, a=np.zeros(75_000), b=np.zeros(75_000))  # 600 KB each
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, "1M")
    with pytest.raises(LoadError) as caught:
        load_archive(str(path))
    assert str(caught.value) == (
        f"{path}: its 2 arrays together need 1.14 MiB to load, more than the memory budget of "
        f"1 MiB; set {MEMORY_BUDGET_VARIABLE} to allow more (given to --inputs)"
    )


def test_csv_beyond_the_budget_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV file larger than the budget is refused before it is parsed."""
    spec = write_text(tmp_path, "x.csv", "1.5,2.5\n" * 25)
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, "100")

    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the CSV was parsed")

    monkeypatch.setattr(np, "loadtxt", no_parsing)
    assert load_error(spec) == (
        f"{spec}: the CSV file is 200 bytes, more than the memory budget of 100 bytes; "
        f"set {MEMORY_BUDGET_VARIABLE} to allow more (given to --x)"
    )


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_memory_error_while_reading_is_a_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Running out of memory while reading names the file and the size it needed."""
    spec = save(np.ones((10, 10)), tmp_path, fmt)
    source = f"{spec}:only" if fmt == "npz" else spec

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(np.lib.format, "read_array", out_of_memory)
    assert load_error(spec) == (
        f"{source}: not enough memory to load it: needs 800 bytes (shape (10, 10) of float64) "
        "(given to --x)"
    )


def test_memory_error_while_parsing_a_csv_is_a_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running out of memory while parsing a CSV names the file and its size."""
    spec = write_text(tmp_path, "x.csv", "1,2\n")

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(np, "loadtxt", out_of_memory)
    assert load_error(spec) == (
        f"{spec}: not enough memory to parse this CSV file of 4 bytes (given to --x)"
    )


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("1048576", 2**20),
        ("512M", 512 * 2**20),
        ("2g", 2 * 2**30),
        ("1.5GiB", 3 * 2**29),
        (" 64 kB ", 64 * 2**10),
        ("1T", 2**40),
    ],
)
def test_memory_budget_variable(monkeypatch: pytest.MonkeyPatch, text: str, budget: int) -> None:
    """GRADCHECK_MEMORY_BUDGET takes bytes or a size with K, M, G or T (binary multiples)."""
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, text)
    assert memory_budget() == budget


@pytest.mark.parametrize("text", ["lots", "0", "-5", "1e9", "5 MB per array", "9" * 400])
def test_memory_budget_variable_malformed(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """A budget that is not a positive size is a LoadError naming the variable and its value."""
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, text)
    with pytest.raises(LoadError) as caught:
        memory_budget()
    assert str(caught.value) == (
        f"{MEMORY_BUDGET_VARIABLE}={text!r}: expected a memory size in bytes, or with K, M, G "
        "or T such as 512M or 2G"
    )


def fake_memory_files(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
    """Make the budget read `files` (path -> text) instead of /proc and /sys; others unreadable."""
    monkeypatch.setattr(
        "gradcheck_cli.subject.arrays.budget.read_small_text", lambda path: files.get(path, "")
    )


def test_default_budget_is_an_eighth_of_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable: MemAvailable / 8, lowered to a cgroup's remaining allowance."""
    meminfo = "MemTotal:       16777216 kB\nMemAvailable:    8388608 kB\n"
    fake_memory_files(monkeypatch, {"/proc/meminfo": meminfo})
    assert memory_budget() == 2**30
    fake_memory_files(
        monkeypatch,
        {
            "/proc/meminfo": meminfo,
            "/sys/fs/cgroup/memory.max": f"{4 * 2**30}\n",
            "/sys/fs/cgroup/memory.current": f"{2**30}\n",
        },
    )
    assert memory_budget() == 3 * 2**30 // 8


def test_default_budget_floor_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A nearly full cgroup still allows the floor; with nothing readable, the fallback."""
    fake_memory_files(
        monkeypatch,
        {"/sys/fs/cgroup/memory.max": "1000\n", "/sys/fs/cgroup/memory.current": "5000\n"},
    )
    assert memory_budget() == MEMORY_BUDGET_FLOOR
    fake_memory_files(monkeypatch, {})
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert memory_budget() == MEMORY_BUDGET_FALLBACK


def test_default_budget_on_this_machine_is_within_its_memory() -> None:
    """The real default is at least the floor and at most the machine's physical memory."""
    budget = memory_budget()
    assert budget >= MEMORY_BUDGET_FLOOR
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        assert budget <= max(physical, MEMORY_BUDGET_FLOOR)


# --- hostile files: links, devices, names -------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".npz"])
def test_symlink_loop_says_so(tmp_path: Path, suffix: str) -> None:
    """A path that is a symlink loop is reported as one, not as a missing file."""
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    first.symlink_to(second)
    second.symlink_to(first)
    assert load_error(str(first)) == (
        f"{first}: is a symlink loop, it never reaches a file (given to --x)"
    )


def test_broken_symlink_names_its_target(tmp_path: Path) -> None:
    """A symlink to nothing says so and names where it points."""
    link = tmp_path / "x.csv"
    link.symlink_to("gone/x.csv")
    assert load_error(str(link)) == (
        f"{link}: is a broken symlink: its target gone/x.csv does not exist (given to --x)"
    )


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_not_read(tmp_path: Path) -> None:
    """A link to a device (here /dev/null; /dev/zero would never end) is refused unread."""
    link = tmp_path / "null.csv"
    link.symlink_to("/dev/null")
    assert load_error(str(link)) == (
        f"{link}: is a character device, not a regular file (--x expects a file)"
    )


def test_control_characters_in_a_file_name_are_escaped(tmp_path: Path) -> None:
    """A file name holding ESC[2J reaches the message as visible text, not as an escape."""
    spec = str(tmp_path / "\x1b[2Jx.csv")
    message = load_error(spec)
    assert message == f"{tmp_path}/\\x1b[2Jx.csv: no such file (given to --x)"
    assert "\x1b" not in message


def test_control_characters_in_an_npz_key_are_escaped(tmp_path: Path) -> None:
    """A key holding an OSC title sequence is escaped where the message names path:key."""
    array = np.ones((2, 2))
    array[1, 1] = np.nan
    np.savez(tmp_path / "m.npz", allow_pickle=False, **{"k\x1b]0;pwned\x07": array})
    spec = str(tmp_path / "m.npz")
    assert load_error(spec) == (
        f"{spec}:k\\x1b]0;pwned\\x07: entry [1, 1] is NaN (--x expects finite numbers)"
    )
