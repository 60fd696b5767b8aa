"""Packaging shim: the metadata lives in pyproject.toml; this file keeps `python setup.py` tooling working."""

from setuptools import setup

setup()
