"""What a user installs is the wheel, not the checkout: it carries every file of the package,
its program runs from anywhere, and a broken install says so with exit 3, never 1.

The wheel is built from a copy of the project's own files (so the checkout gains no build/ or
egg-info), installed with `pip install --target` beside the test environment's dependencies,
and run from a directory outside the checkout, where the source tree cannot stand in for a
module the wheel forgot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gradcheck_cli"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]


def _package_files() -> set[str]:
    """Every file of the package in the source tree, as a path inside the wheel."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "gradcheck_cli", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("gradcheck-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_wheel(wheel, tmp_path_factory)


def installed_wheel(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel; its dependencies come from the test
    environment's site-packages through a .pth line, which (unlike a site directory) does not
    run that environment's own .pth files: the editable install of the checkout stays out."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    dependencies = sysconfig.get_path("purelib")
    (site_packages / "test-dependencies.pth").write_text(dependencies + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "--no-deps", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv


def _package_in(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages/gradcheck_cli")
    return found


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(TERM="dumb", COLUMNS="120", NO_COLOR="1")
    return env


def _program(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "gradcheck"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(),
        timeout=120,
    )


def _module(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "gradcheck_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(),
        timeout=120,
    )


def test_the_wheel_carries_every_file_of_the_package(wheel: Path) -> None:
    """Every module, subpackage and data file (schema.json, py.typed) of gradcheck_cli/ is in
    the wheel: a subpackage left out of pyproject.toml fails here, not on a user's machine."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("gradcheck_cli/")}
    missing = sorted(_package_files() - shipped)
    assert not missing, f"the wheel lacks {missing}"
    assert "gradcheck_cli/commands/run.py" in shipped


PRINT_WHERE_EACH_MODULE_COMES_FROM = """
import sys
import gradcheck_cli.cli
for name, module in sorted(sys.modules.items()):
    if name.startswith("gradcheck_cli"):
        print(module.__file__)
"""


def test_the_installed_program_runs_the_seed_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    """The README's first command in miniature: the installed program, started from elsewhere,
    imports the installed package (not the checkout) and checks the seed: 15 entries pass."""
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", PRINT_WHERE_EACH_MODULE_COMES_FROM],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_environment(),
        check=True,
    )
    package = _package_in(installed)
    assert {Path(line).parent for line in where.stdout.split()} == {package, package / "commands"}

    version = _program(installed, "--version", cwd=tmp_path)
    assert (version.returncode, version.stderr) == (0, "")
    assert version.stdout.startswith("gradcheck, version ")

    table = _program(installed, "run", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "f(X, W) = 5.833329393581208" in table.stdout
    assert table.stdout.rstrip().endswith("PASSED: all 15 entries agree.")


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--format", "json"),
        ("perturb", "--entry", "0,0", "--delta", "1e-4"),
        ("run", "--model", "no_such_file.py"),
        ("--version",),
        ("run", "--no-such-option"),
    ],
)
def test_python_dash_m_behaves_as_the_program(
    installed: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`python -m gradcheck_cli ARGS` prints and exits exactly as `gradcheck ARGS` does."""
    program = _program(installed, *args, cwd=tmp_path)
    module = _module(installed, *args, cwd=tmp_path)
    assert (module.returncode, module.stdout, module.stderr) == (
        program.returncode,
        program.stdout,
        program.stderr,
    )


def test_a_broken_install_is_exit_3_with_one_line(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """An install that lacks a subpackage (the wheel that shipped without commands/) is an
    internal error: exit 3 and one line naming the missing module, never a traceback and exit
    1, which CI reads as "a gradient is wrong"."""
    installed = installed_wheel(wheel, tmp_path_factory)
    shutil.rmtree(_package_in(installed) / "commands", ignore_errors=True)
    for run in (_program, _module):
        done = run(installed, "run", cwd=tmp_path)
        assert done.returncode == 3, done.stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("gradcheck: internal error: ModuleNotFoundError")
        assert "gradcheck_cli.commands" in lines[0]
