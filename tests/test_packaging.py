"""`pip install .` (not editable) gives a working pachytype: the generator and
its templates ship inside the package as `pachytype._codegen`, and nothing
is installed under the generic top-level name `codegen`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("pachytype-*.whl")
    return built


def test_the_wheel_ships_the_generator_inside_pachytype(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "pachytype/_codegen/__init__.py" in names
    assert "pachytype/py.typed" in names
    assert any(
        n.startswith("pachytype/_codegen/templates/") and n.endswith(".jinja") for n in names
    )
    assert not [n for n in names if n.startswith(("codegen/", "templates/", "tests/", "examples/"))]


def test_the_installed_command_generates_refs_from_any_directory(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "counter", project / "shop" / "counter")
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "counter" / "refs.py").unlink()
    for py in (project / "shop" / "counter").glob("*.py"):
        py.write_text(py.read_text().replace("examples.counter", "shop.counter"))
    # -S: no site-packages .pth files, so the source checkout (an editable
    # install) is invisible; dependencies come from the venv's site dir.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]]),
    }
    run = subprocess.run(
        [sys.executable, "-S", "-m", "pachytype", "generate", "shop/counter"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    refs = (project / "shop" / "counter" / "refs.py").read_text()
    assert "def counter(id: CounterId) -> CounterRef:" in refs
    probe = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import pachytype._generator as g, importlib.util as u;"
            "print(g.codegen_module().__name__, u.find_spec('codegen'))",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["pachytype._codegen", "None"]


def test_nothing_in_pachytype_imports_pickle() -> None:
    """Nothing is ever unpickled (DESIGN §1.10): processes exchange JSON."""
    package = Path(__file__).parent.parent / "pachytype"
    offenders = [
        str(path)
        for path in package.rglob("*.py")
        if any(
            line.strip().startswith(("import pickle", "from pickle", "import cPickle"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
