"""DynamoDB's writes made atomic in moto, as DynamoDB makes them: the local stack and the tests rely on it.

DynamoDB applies each write to an item atomically: a conditional ``UpdateItem`` checks its condition and writes in one
step, so two consumers taking a send slot of one destination at the same moment get two slots, one after the other.
moto (5.x) checks and writes without a lock. Its server serves requests on threads, and the tests' consumers are
threads too: both writes could pass the same condition, and two sends went out in the same slot (a burst test saw
pairs of requests a few milliseconds apart, answered 429). A transaction's rollback could likewise undo a write made
during it.

``serialize_writes()`` wraps the writes of moto's DynamoDB backend, and the reads of one item, in one lock of the
process. It is idempotent; moto's work holds the interpreter anyway, so the lock costs no throughput.
"""

from __future__ import annotations

from infra.local.moto_locks import serialize

# Backend methods that read or write one item, or write several as one: each runs whole under the lock.
METHODS = ("put_item", "update_item", "delete_item", "get_item", "transact_write_items")


def serialize_writes() -> None:
    """Make moto's DynamoDB item writes atomic with respect to each other in this process."""
    from moto.dynamodb.models import DynamoDBBackend

    serialize(DynamoDBBackend, METHODS)
