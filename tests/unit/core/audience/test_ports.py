"""Unit tests of core/audience/ports.py: the PostgreSQL repository and the fake implement the port."""

from __future__ import annotations

from core.audience.connection import Database
from core.audience.ports import AudienceRepositoryPort
from core.audience.repository import AudienceRepository
from tests.fakes.audience import FakeAudienceRepository


def test_ports_audience_repository_implements_its_port() -> None:
    repository: AudienceRepositoryPort = AudienceRepository(Database("postgresql://unused"))

    assert isinstance(repository, AudienceRepositoryPort)


def test_ports_fake_audience_repository_implements_the_port() -> None:
    repository: AudienceRepositoryPort = FakeAudienceRepository()

    assert isinstance(repository, AudienceRepositoryPort)
