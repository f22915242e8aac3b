"""Package layout that pyproject.toml cannot say alone: the top-level ``experiments/`` folder (the project's layout)
ships inside the wheel as the package data ``chanmusic.experiments`` (read by ``chanmusic.runner.spec`` through
importlib.resources). Everything else is in pyproject.toml."""
from setuptools import find_namespace_packages, find_packages, setup

EXPERIMENTS = ["chanmusic.experiments"] + [f"chanmusic.experiments.{p}" for p in find_namespace_packages("experiments")]

setup(
    packages=find_packages(include=["chanmusic*", "encoders*", "datamodules*", "callbacks*"]) + EXPERIMENTS,
    package_dir={"chanmusic.experiments": "experiments"},
)
