"""`serverless deploy` rehearsed against moto: everything serverless.yml declares exists with its settings."""

from __future__ import annotations

import pytest

from infra.deploy.rehearse import VERIFIERS, Deployment, unverified_skips

pytestmark = pytest.mark.timeout(600)


def test_rehearsal_stack_update_completes(deployment: Deployment) -> None:
    assert deployment.physical_id("DeliverLambdaFunction") == "notify-ci-deliver"


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_rehearsal_resources_match_serverless_yml(deployment: Deployment, name: str) -> None:
    findings = VERIFIERS[name](deployment)

    assert findings.problems == []


def test_rehearsal_every_type_moto_skips_is_asserted_from_the_template(deployment: Deployment) -> None:
    assert unverified_skips(deployment) == []
