"""The packaged ci stage (built once when missing) and its rehearsal deploy against a moto server of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.deploy.motoserver import moto_server
from infra.deploy.package import DEFAULT_PACKAGE_DIR, ROOT, PackagedService, load_package
from infra.deploy.rehearse import Aws, Deployment, deploy


@pytest.fixture(scope="session")
def packaged() -> PackagedService:
    """The package `make deploy-checks` built (NOTIFY_PACKAGE_DIR), or `.build/ci`, built here when missing."""
    directory = Path(os.environ.get("NOTIFY_PACKAGE_DIR", DEFAULT_PACKAGE_DIR))
    if not (directory / "serverless-state.json").is_file():
        make = shutil.which("make")
        assert make, "make is needed to build the package"
        subprocess.run([make, "package", "STAGE=ci"], cwd=ROOT, check=True)
    return load_package(directory)


@pytest.fixture(scope="session")
def deployment(packaged: PackagedService) -> Iterator[Deployment]:
    """The package deployed the way osls deploys, to a moto server that stops with the session."""
    with moto_server() as url:
        yield deploy(packaged, Aws(url, packaged.region))
