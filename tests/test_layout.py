"""The package layout: the import contracts in pyproject.toml hold, and the old import paths still work.

The contracts are checked by import-linter's ``lint-imports`` (layers that import only downward,
independent engines / export formats / anchors, no cycles between siblings); a broken contract
fails the suite here, not only in a separate CI step.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(src: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("lint-imports is not installed (pip install 'res2net[test]')")
        pytest.skip("lint-imports is not installed (pip install 'res2net[test]')")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [exe, "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_are_kept():
    result = _lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    """The check can fail: the same package with data/ importing the Predictor is rejected."""
    shutil.copytree(ROOT / "src" / "res2net", tmp_path / "res2net", ignore=shutil.ignore_patterns("__pycache__"))
    image = tmp_path / "res2net" / "data" / "image.py"
    image.write_text(image.read_text() + "\n\ndef _upward():\n    from res2net.predict import Predictor\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "layers import only downward BROKEN" in result.stdout.replace("\n", " ")
    assert "res2net.data.image" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("res2net.engine.train", "res2net.training.train"),
        ("res2net.engine.config", "res2net.training.config"),
        ("res2net.engines.torch_engine", "res2net.runtime.torch_engine"),
        ("res2net.engines.base", "res2net.runtime.base"),
    ],
)
def test_old_module_paths_are_the_new_modules(old, new):
    for name in [m for m in sys.modules if m.split(".")[:2] in (["res2net", "engine"], ["res2net", "engines"])]:
        del sys.modules[name]  # so the package's warning runs again
    with pytest.warns(DeprecationWarning, match=r"moved to res2net\.(training|runtime)"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)  # one module object: classes and state stay one


def test_old_names_still_resolve_with_a_warning():
    import res2net
    import res2net.models
    from res2net.predict import Predictor
    from res2net.runtime import create_engine

    with pytest.warns(DeprecationWarning, match="res2net.create_model"):
        from res2net.models import create_model
    assert create_model is res2net.create_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import res2net.engine
        import res2net.engines

        assert res2net.engines.create_engine is create_engine
        assert res2net.engine.train is importlib.import_module("res2net.training.train")
    assert res2net.Predictor is Predictor
    with pytest.raises(AttributeError):
        res2net.models.no_such_name  # noqa: B018
