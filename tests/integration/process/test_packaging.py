"""`pip install .` gives a working Contrail: the `contrail` script, the web console's files and the model."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the checkout: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path_factory.mktemp("source") / "contrail"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "var", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".hypothesis"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             str(source), "-w", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [built] = out.glob("contrail-*.whl")
    return built


def test_the_wheel_carries_the_script_the_console_and_the_model(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"static/index.html", "ml/models/default-v1.npz", "app/__main__.py"} <= set(names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "contrail = app.__main__:run" in entry


def test_the_installed_package_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    env = {"PYTHONPATH": str(target), "CONTRAIL__STORAGE__DATA_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-P", "-c", "from app.__main__ import run; run()"]  # what the script runs
    migrated = subprocess.run([*run, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    assert str(tmp_path / "var") in migrated.stdout
    where = subprocess.run([sys.executable, "-P", "-c", "import app.main as m; print(m.STATIC_DIR / 'index.html')"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target)) and (target / "static" / "index.html").is_file()
