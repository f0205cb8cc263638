"""Build the wheel of the colonpipe package that is running, for a logged model to carry.

``build_wheel(out_dir)`` copies the project's build inputs (``pyproject.toml``, ``README.md``,
``colonpipe/``; no ``__pycache__``) into a scratch folder and runs ``pip wheel --no-deps
--no-build-isolation`` there, so the checkout gets no ``build/`` or ``*.egg-info`` and nothing is
downloaded (setuptools comes from this environment). The build has a deadline
(``timeout_s``); a failure raises :class:`WheelBuildError` with pip's last output lines.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD_INPUTS = ("pyproject.toml", "README.md")


class WheelBuildError(RuntimeError):
    """The colonpipe wheel could not be built; the message says where and why."""


def project_root() -> Path:
    """The source tree the running ``colonpipe`` was imported from (holds ``pyproject.toml``)."""
    root = Path(__file__).resolve().parents[2]  # <root>/colonpipe/register/wheel.py
    if not (root / "pyproject.toml").is_file():
        raise WheelBuildError(f"{root}: colonpipe is not running from its source tree (no pyproject.toml); "
                              "install the package from a checkout to log a model that carries it")
    return root


def build_wheel(out_dir: Path, *, timeout_s: float = 300) -> Path:
    """Build ``colonpipe-<version>-py3-none-any.whl`` into ``out_dir``; return its path."""
    root = project_root()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="colonpipe-wheel-") as scratch:
        src = Path(scratch) / "src"
        shutil.copytree(root / "colonpipe", src / "colonpipe", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in BUILD_INPUTS:
            shutil.copy2(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
               "-w", str(out_dir), str(src)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise WheelBuildError(f"{root}: pip wheel did not finish within {timeout_s:.0f} s") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise WheelBuildError(f"{root}: pip wheel failed (exit {done.returncode}):\n{tail}")
    wheels = sorted(out_dir.glob("colonpipe-*.whl"))
    if len(wheels) != 1:
        raise WheelBuildError(f"{out_dir}: expected one colonpipe wheel, found {[w.name for w in wheels]}")
    return wheels[0]
