"""Packaging beyond what pyproject.toml can say: conf/ stays at the top of the repository, and a
wheel carries it inside the package as ganlab/conf (every config group, nested ones included),
so the console scripts find their configs wherever ganlab is installed."""

from setuptools import find_namespace_packages, find_packages, setup

config_groups = [f"ganlab.conf.{group}" for group in find_namespace_packages(where="conf")]
setup(
    packages=[*find_packages(include=["ganlab*"]), "ganlab.conf", *config_groups],
    package_dir={"ganlab.conf": "conf"},
    package_data={"ganlab.conf": ["*.yaml"], **{group: ["*.yaml"] for group in config_groups}},
)
