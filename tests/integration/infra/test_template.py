"""The packaged ci stage: least-privilege roles, a runtime-only artifact, cfn-lint and actionlint clean."""

from __future__ import annotations

import pytest

from infra.deploy.checks import actionlint, artifact_problems, cfn_lint, iam_wildcards, role_problems, workflow_files
from infra.deploy.package import PackagedService

pytestmark = pytest.mark.timeout(300)


def test_template_iam_has_no_wildcards(packaged: PackagedService) -> None:
    assert iam_wildcards(packaged.template) == []


def test_template_every_function_has_its_own_role(packaged: PackagedService) -> None:
    assert role_problems(packaged) == []


def test_artifact_holds_runtime_code_and_requirements_only(packaged: PackagedService) -> None:
    assert artifact_problems(packaged.artifact) == []


def test_artifact_has_no_tests_bench_or_local_stack(packaged: PackagedService) -> None:
    import zipfile

    with zipfile.ZipFile(packaged.artifact) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}

    assert {"core", "producer", "consumer", "api"} <= tops
    assert not tops & {"tests", "bench", "infra", "moto", "pytest", "cfnlint"}


def test_templates_have_no_cfn_lint_errors(packaged: PackagedService) -> None:
    templates = [
        packaged.directory / "cloudformation-template-create-stack.json",
        packaged.directory / "cloudformation-template-update-stack.json",
    ]

    result = cfn_lint(templates)

    assert result.ok, result.output


def test_workflows_pass_actionlint() -> None:
    files = workflow_files()

    result = actionlint(files)

    assert {path.name for path in files} >= {"ci.yml", "deploy.yml"}
    assert result.ok, result.output


def test_template_functions_run_python312_on_arm64(packaged: PackagedService) -> None:
    functions = packaged.of_type("AWS::Lambda::Function").values()

    assert {(f["Properties"]["Runtime"], tuple(f["Properties"]["Architectures"])) for f in functions} == {
        ("python3.12", ("arm64",))
    }


def test_template_local_stage_settings_do_not_leak_into_ci(packaged: PackagedService) -> None:
    deliver = packaged.resources["DeliverLambdaFunction"]["Properties"]["Environment"]["Variables"]

    assert deliver["ALLOW_PRIVATE_TARGETS"] == "false"
