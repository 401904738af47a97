"""The bento ships what the service imports: bentofile.yaml's packages are pyproject's, less training-only ones."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAINING_ONLY = {"optuna", "scipy", "threadpoolctl"}  # the service never imports these


def name(requirement: str) -> str:
    return requirement.split(">")[0].split("=")[0].split("<")[0].strip()


def test_bentofile_packages_are_the_runtime_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bento = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    assert sorted(bento) == sorted(r for r in project if name(r) not in TRAINING_ONLY)
