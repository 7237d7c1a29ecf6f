"""The output of ``osls package``: templates, the resolved service definition and each function's artifact."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PACKAGE_DIR = ROOT / ".build" / "ci"

_REF_STEP = re.compile(r'\["([^"]*)"\]')


class PackageError(Exception):
    """The package directory is missing or incomplete."""


def _resolve_refs(node: Any, root: dict[str, Any]) -> Any:
    """Replace osls' ``{"$ref": "$[\\"a\\"][\\"b\\"]"}`` back-references with the values they point at."""
    if isinstance(node, dict):
        if set(node) == {"$ref"} and isinstance(node["$ref"], str) and node["$ref"].startswith("$"):
            target: Any = root
            for step in _REF_STEP.findall(node["$ref"]):
                target = target[int(step)] if isinstance(target, list) else target[step]
            return _resolve_refs(target, root)
        return {key: _resolve_refs(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_refs(value, root) for value in node]
    return node


@dataclass(frozen=True)
class PackagedService:
    """A packaged stage: what ``serverless deploy`` would upload and apply.

    Parameters
    ----------
    directory:
        Where ``osls package --package <directory>`` wrote its output.
    """

    directory: Path

    def _json(self, name: str) -> dict[str, Any]:
        path = self.directory / name
        if not path.is_file():
            raise PackageError(f"{path} is missing: run `make package` first")
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    @cached_property
    def template(self) -> dict[str, Any]:
        """The full stack template (``cloudformation-template-update-stack.json``)."""
        return self._json("cloudformation-template-update-stack.json")

    @cached_property
    def core_template(self) -> dict[str, Any]:
        """The first template of a new stack: the deployment bucket only."""
        return self._json("cloudformation-template-create-stack.json")

    @cached_property
    def state(self) -> dict[str, Any]:
        """The resolved service definition (``serverless-state.json``) with back-references resolved."""
        raw = self._json("serverless-state.json")
        resolved: dict[str, Any] = _resolve_refs(raw, raw)
        return resolved

    @property
    def service(self) -> dict[str, Any]:
        """The resolved ``serverless.yml``."""
        service: dict[str, Any] = self.state["service"]
        return service

    @property
    def provider(self) -> dict[str, Any]:
        """The resolved ``provider`` section."""
        provider: dict[str, Any] = self.service["provider"]
        return provider

    @property
    def functions(self) -> dict[str, dict[str, Any]]:
        """The resolved functions by their serverless.yml key."""
        functions: dict[str, dict[str, Any]] = self.service["functions"]
        return functions

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The template's resources by logical id."""
        resources: dict[str, dict[str, Any]] = self.template["Resources"]
        return resources

    @property
    def stage(self) -> str:
        """The stage packaged."""
        return str(self.provider["stage"])

    @property
    def region(self) -> str:
        """The region packaged for."""
        return str(self.provider["region"])

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack osls deploys to."""
        return str(self.provider.get("stackName") or f"{self.service['service']}-{self.stage}")

    @property
    def artifact_directory(self) -> str:
        """The deployment bucket prefix of this package's artifacts."""
        return str(self.state["package"]["artifactDirectoryName"])

    @cached_property
    def artifacts(self) -> dict[str, Path]:
        """Each function's zip by its serverless.yml key (functions are packaged individually)."""
        artifacts: dict[str, Path] = {}
        for key, function in self.functions.items():
            recorded = (function.get("package") or {}).get("artifact") or self.state["package"].get("artifact")
            if not recorded:
                raise PackageError(f"function {key} has no artifact: run `make package` first")
            # osls records where it zipped (.serverless/); --package moved the zips into this directory.
            path = self.directory / Path(str(recorded)).name
            if not path.is_file():
                raise PackageError(f"{path} is missing: run `make package` first")
            artifacts[key] = path
        return artifacts

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Return the template's resources of one type by logical id."""
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}

    def function_logical_id(self, name: str) -> str:
        """Return the logical id osls gives a function's ``AWS::Lambda::Function``."""
        normalized = name[0].upper() + name[1:]
        return f"{normalized.replace('-', 'Dash').replace('_', 'Underscore')}LambdaFunction"


def load_package(directory: Path | str | None = None) -> PackagedService:
    """Return the package in ``directory`` (default ``.build/ci``), checking its files are there."""
    service = PackagedService(Path(directory) if directory else DEFAULT_PACKAGE_DIR)
    _ = service.template, service.core_template, service.state, service.artifacts
    return service
