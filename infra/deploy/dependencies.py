"""Each function's dependencies: requirements.txt for Lambda's arm64 Python 3.12, in groups, so each carries its own.

osls runs this through ``infra/deploy/osls-dependencies.js`` (never for the local stage, which runs the .venv):

- ``python -m infra.deploy.dependencies build``, before it packages: requirements.txt installed once with pip's
  platform flags, each distribution copied into the directory of its group, ``.build/dependencies/<group>/``:
  ``base`` holds every requirement and what it requires except the ``EXTRAS`` (stripe, psycopg2: each a group of its
  own, with what it requires that ``base`` does not hold) and what Lambda's python3.12 runtime already has
  (``RUNTIME_PROVIDED``: boto3 and botocore);
- ``python -m infra.deploy.dependencies inject '{"<zip>": ["stripe"], …}'``, after osls zipped each function's code:
  each zip gets ``base`` and the extras its function lists in serverless.yml (``dependencies: [stripe]``).

Bytecode: when a Python 3.12 runs here (this interpreter, ``$PYTHON312``, ``python3.12`` on PATH, or one pyenv or uv
installed) the groups are compiled with unchecked-hash pycs (osls stamps every zip entry with one date, so timestamp
pycs would never match), and this repository's code with checked-hash pycs (they stay correct while the code is
edited). Without one nothing is compiled and any Python 3.12 bytecode of the code is removed: Lambda then compiles
each module at every cold start.
The pip install and the zipped groups are kept while their inputs are unchanged (``.build/dependencies/.key``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / ".build" / "dependencies"
REQUIREMENTS = ROOT / "requirements.txt"
BASE = "base"
# Dependencies only some functions import: a function lists the group in serverless.yml (`dependencies: [stripe]`).
EXTRAS: dict[str, frozenset[str]] = {
    "stripe": frozenset({"stripe"}),
    "postgres": frozenset({"psycopg2-binary"}),
}
# Lambda's python3.12 runtime ships boto3 and botocore, compiled; ours would add ~30 MB to every function.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
# Our code: the packages serverless.yml puts in the function zips.
CODE_PACKAGES = ("core", "producer", "consumer", "subscribers", "api", "cron")
RUNTIME_PYTHON = (3, 12)
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34) on arm64: binary wheels only, never built here.
PIP_TARGET_ARGS = (
    "--platform=manylinux2014_aarch64",
    "--platform=manylinux_2_28_aarch64",
    "--platform=manylinux_2_34_aarch64",
    "--implementation=cp",
    "--python-version=3.12",
    "--only-binary=:all:",
    "--no-compile",
)
# What the requirements' markers see on Lambda.
MARKER_ENVIRONMENT = {
    "implementation_name": "cpython",
    "implementation_version": "3.12.0",
    "os_name": "posix",
    "platform_machine": "aarch64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.12.0",
    "python_version": "3.12",
    "sys_platform": "linux",
}
# The date osls gives every zip entry (1980-01-01, the zip format's first); the injected files get it too.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_INSTALL = ".install"
_ZIPS = ".zips"
_KEY_FILE = ".key"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


class DependencyBuildError(Exception):
    """pip or the compiler failed, or a function names a group that does not exist."""


def normalize(name: str) -> str:
    """Return a distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_roots(requirements: Path = REQUIREMENTS) -> dict[str, frozenset[str]]:
    """Return the distributions requirements.txt names, each with the extras it asks for."""
    roots: dict[str, frozenset[str]] = {}
    for line in requirements.read_text().splitlines():
        stripped = line.split("#", 1)[0].strip()
        match = _NAME.match(stripped)
        if match and not stripped.startswith("-"):
            extras = frozenset(normalize(extra) for extra in (match.group(2) or "").split(",") if extra.strip())
            roots[normalize(match.group(1))] = extras
    return roots


@dataclass(frozen=True)
class Distribution:
    """One installed distribution: its files (from RECORD) and what it requires (Requires-Dist)."""

    name: str
    dist_info: str
    files: tuple[str, ...]
    requires: tuple[str, ...]


def read_distributions(site: Path) -> dict[str, Distribution]:
    """Return the distributions installed in ``site`` by normalized name."""
    found: dict[str, Distribution] = {}
    for dist_info in sorted(site.glob("*.dist-info")):
        header = (dist_info / "METADATA").read_text(errors="replace").split("\n\n", 1)[0].splitlines()
        name = normalize(next(line.split(":", 1)[1].strip() for line in header if line.startswith("Name:")))
        requires = tuple(line.split(":", 1)[1].strip() for line in header if line.startswith("Requires-Dist:"))
        record = (dist_info / "RECORD").read_text().splitlines()
        files = tuple(line.rsplit(",", 2)[0] for line in record if line.strip())
        found[name] = Distribution(name, dist_info.name, files, requires)
    return found


def _required(requirement: str, extras: frozenset[str]) -> tuple[str, frozenset[str]] | None:
    """Return (name, extras) of a Requires-Dist entry that applies on Lambda with these extras, else ``None``."""
    from packaging.requirements import Requirement

    parsed = Requirement(requirement)
    if parsed.marker is not None:
        environments = [{**MARKER_ENVIRONMENT, "extra": extra} for extra in sorted(extras) or [""]]
        if not any(parsed.marker.evaluate(environment) for environment in environments):
            return None
    return normalize(parsed.name), frozenset(normalize(extra) for extra in parsed.extras)


def required(requirement: str) -> str | None:
    """Return the distribution a Requires-Dist entry names when it applies on Lambda without extras, else ``None``."""
    found = _required(requirement, frozenset())
    return found[0] if found else None


def closure(
    roots: Mapping[str, frozenset[str]], installed: Mapping[str, Distribution], stop: Iterable[str] = RUNTIME_PROVIDED
) -> set[str]:
    """Return the distributions ``roots`` need on Lambda, through Requires-Dist, not following those in ``stop``."""
    stopped = set(stop)
    seen: dict[str, frozenset[str]] = {}
    pending = [(name, extras) for name, extras in roots.items() if name not in stopped]
    while pending:
        name, extras = pending.pop()
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, frozenset()) | extras
        distribution = installed.get(name)
        for requirement in distribution.requires if distribution else ():
            required = _required(requirement, seen[name])
            if required and required[0] not in stopped:
                pending.append(required)
    return set(seen)


def assign_groups(roots: Mapping[str, frozenset[str]], installed: Mapping[str, Distribution]) -> dict[str, set[str]]:
    """Return each group's distributions: ``base`` with every requirement but the extras, each extra its own."""
    extra_names = set().union(*EXTRAS.values())
    groups = {BASE: closure({name: e for name, e in roots.items() if name not in extra_names}, installed)}
    for group, names in EXTRAS.items():
        groups[group] = closure({name: e for name, e in roots.items() if name in names}, installed) - groups[BASE]
    return groups


def _version(path: Path) -> tuple[int, ...]:
    """The version in an install directory's name (``3.12.10``, ``cpython-3.12.10-linux-…``), as numbers."""
    found = re.search(r"3\.12(?:\.\d+)*", path.parents[1].name)
    return tuple(int(part) for part in found.group().split(".")) if found else ()


def _installed_pythons() -> list[str]:
    """Return the Python 3.12 interpreters of version managers that are not on PATH: pyenv's and uv's, newest first."""
    places = [
        (Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions", "3.12*/bin/python3.12"),
        (
            Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local" / "share" / "uv" / "python"),
            "cpython-3.12*/bin/python3.12",
        ),
    ]
    found: list[str] = []
    for root, pattern in places:
        found += [str(path) for path in sorted(root.glob(pattern), key=_version, reverse=True) if path.is_file()]
    return found


def runtime_python() -> str | None:
    """Return a Python 3.12 interpreter to compile with: this one, ``$PYTHON312``, ``python3.12`` on PATH, or one that
    pyenv or uv installed (a pyenv shim on PATH answers only where 3.12 is the selected version)."""
    if sys.version_info[:2] == RUNTIME_PYTHON:
        return sys.executable
    candidates = (os.environ.get("PYTHON312"), shutil.which("python3.12"), *_installed_pythons())
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(  # noqa: S603 (an interpreter path, probed)
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def _key(python: str | None) -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(Path(__file__).read_bytes())
    digest.update(json.dumps(python is not None).encode())
    return digest.hexdigest()


def _pip_install(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(target)]
    command += [*PIP_TARGET_ARGS, "-r", str(REQUIREMENTS)]
    if subprocess.run(command, check=False).returncode != 0:  # noqa: S603 (our own arguments)
        raise DependencyBuildError("pip could not install requirements.txt for Lambda (arm64, Python 3.12)")


def _copy(site: Path, distribution: Distribution, into: Path) -> None:
    for name in (*distribution.files, f"{distribution.dist_info}/RECORD"):
        path = PurePosixPath(name)
        if ".." in path.parts or path.parts[0] == "bin" or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        source = site / path
        if source.is_file():
            destination = into / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _compile(python: str, paths: Sequence[Path], mode: str) -> None:
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", mode, *map(str, paths)]
    if subprocess.run(command, check=False).returncode != 0:  # noqa: S603 (our own arguments)
        raise DependencyBuildError(f"Python 3.12 could not compile {', '.join(path.name for path in paths)}")


def _code_bytecode(python: str | None) -> None:
    """Compile our code for Python 3.12 in place, or remove its 3.12 bytecode when there is no 3.12 to compile it."""
    packages = [ROOT / package for package in CODE_PACKAGES if (ROOT / package).is_dir()]
    for package in packages:
        for pyc in package.rglob("__pycache__/*.cpython-312.pyc"):
            source = pyc.parent.parent / f"{pyc.name.split('.', 1)[0]}.py"
            if python is None or not source.is_file():
                pyc.unlink()
    if python is not None:
        _compile(python, packages, "checked-hash")


def build(out: Path = BUILD_DIR) -> dict[str, set[str]]:
    """Build every group into ``out`` (pip only when its inputs changed); return each group's distributions."""
    python = runtime_python()
    key = _key(python)
    site = out / _INSTALL
    current = site.is_dir() and (out / _KEY_FILE).is_file() and (out / _KEY_FILE).read_text() == key
    if not current:
        (out / _KEY_FILE).unlink(missing_ok=True)
        shutil.rmtree(out / _ZIPS, ignore_errors=True)
        _pip_install(site)
    installed = read_distributions(site)
    groups = assign_groups(requirement_roots(), installed)
    if not current:
        for group, names in groups.items():
            shutil.rmtree(out / group, ignore_errors=True)
            (out / group).mkdir(parents=True)
            for name in sorted(names & set(installed)):
                _copy(site, installed[name], out / group)
            if python is not None:
                _compile(python, [out / group], "unchecked-hash")
        (out / _KEY_FILE).write_text(key)
    _code_bytecode(python)
    return groups


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.external_attr = (mode & 0xFFFF) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def group_zip(groups: Sequence[str], out: Path = BUILD_DIR) -> Path:
    """Return the zip of these groups' files (made once per build, then reused)."""
    path = out / _ZIPS / f"{'+'.join(groups)}.zip"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for group in groups:
            directory = out / group
            for file in sorted(item for item in directory.rglob("*") if item.is_file()):
                name = file.relative_to(directory).as_posix()
                archive.writestr(_entry(name, 0o100644), file.read_bytes())
    partial.replace(path)
    return path


def inject(artifacts: Mapping[str, Sequence[str]], out: Path = BUILD_DIR) -> None:
    """Add ``base`` and the listed extras to each function zip (path: extras), in place."""
    for artifact, extras in artifacts.items():
        unknown = sorted(set(extras) - set(EXTRAS))
        if unknown:
            raise DependencyBuildError(
                f"{artifact}: no dependency group {', '.join(unknown)} (there are {sorted(EXTRAS)})"
            )
        combined = group_zip([BASE, *sorted(set(extras))], out)
        target = Path(artifact)
        staged = target.with_suffix(".staged")
        shutil.copyfile(combined, staged)
        with zipfile.ZipFile(target) as code, zipfile.ZipFile(staged, "a", zipfile.ZIP_DEFLATED) as archive:
            present = set(archive.namelist())
            for info in code.infolist():
                if info.filename in present:
                    raise DependencyBuildError(f"{artifact}: {info.filename} is both our code and a dependency's")
                archive.writestr(_entry(info.filename, info.external_attr >> 16), code.read(info))
        staged.replace(target)


def main(argv: Sequence[str] | None = None) -> int:
    """``build``, or ``inject '<json object: zip path -> extras>'``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["inject"] and len(args) == 2:
            inject(json.loads(args[1]))
            return 0
        if args not in ([], ["build"]):
            sys.stderr.write("usage: python -m infra.deploy.dependencies [build | inject '<json>']\n")
            return 2
        groups = build()
    except DependencyBuildError as exc:
        sys.stderr.write(f"dependencies: {exc}\n")
        return 1
    for group, names in groups.items():
        sys.stdout.write(f"dependencies {group}: {', '.join(sorted(names)) or '(none)'}\n")
    python = runtime_python()
    if python is None:
        sys.stdout.write(
            "dependencies: no Python 3.12 here (set PYTHON312 or put python3.12 on PATH): packaged without bytecode,"
            " so Lambda compiles every module at each cold start\n"
        )
    else:
        sys.stdout.write(f"dependencies: bytecode compiled by {python}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
