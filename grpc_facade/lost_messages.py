"""Finding a run whose next message was lost with a worker machine.

kombu's Redis transport takes a message with BRPOP and only then records it in its
``unacked`` hash. A machine that dies in between, or loses power while its idle worker's
BRPOP is still open at Redis (up to a second: kombu's BRPOP timeout), takes the message
with it: it is in no queue, in no ``unacked`` record, and no sweep brings it back.

The facade can tell: Celery sends a chain's next task before it stores the result of the
one that ran, so once the run's earlier tasks have succeeded, the first unfinished ones
have a message in their queue or in ``unacked``, or they are lost. The facade then sends
the run again (every stage is keyed by the image, so a second run is harmless).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from celery.result import AsyncResult, GroupResult, ResultBase

UNACKED = "unacked"  # kombu's Redis transport keeps delivered, unacknowledged messages here
SCAN_LIMIT = 100  # queues longer than this are not searched: the run just waits longer


def steps(result: ResultBase) -> list[list[AsyncResult]]:
    """The tasks of the run ending in ``result``, step by step in graph order (a step: one
    task, or the tasks of a group side by side), as far as ``result`` knows its parents."""
    found: list[list[AsyncResult]] = []
    node: ResultBase | None = result
    while node is not None:
        found.append(list(node.results) if isinstance(node, GroupResult) else [node])  # type: ignore[arg-type]
        node = node.parent
    return found[::-1]


def unfinished(result: ResultBase) -> list[AsyncResult]:
    """The first tasks of the run ending in ``result`` that have not succeeded (all of one
    step, in graph order); empty once every task has, or when a task failed for good."""
    for step in steps(result):
        states = {task: task.state for task in step}
        if any(state not in ("PENDING", "SUCCESS") for state in states.values()):
            return []  # failed or retrying: its message is Celery's business, not a loss
        waiting = [task for task, state in states.items() if state == "PENDING"]
        if waiting:
            return waiting
    return []


def message_exists(client: redis.Redis, queues: Sequence[str], task_id: str) -> bool | None:
    """Whether a message of ``task_id`` is held by a worker or waits in one of ``queues``;
    None when it might be in a queue too long to search.

    One transaction reads them all, so a message moving between a queue and ``unacked``
    meanwhile is seen in one of them.
    """
    with client.pipeline(transaction=True) as pipe:
        pipe.hvals(UNACKED)
        for queue in queues:
            pipe.llen(queue).lrange(queue, 0, SCAN_LIMIT - 1)
        held, *waiting = pipe.execute()
    needle = task_id.encode()
    if any(needle in message for message in [*held, *(m for messages in waiting[1::2] for m in messages)]):
        return True
    return None if any(length > SCAN_LIMIT for length in waiting[0::2]) else False


def lost(client: redis.Redis, queues: Sequence[str], result: ResultBase) -> bool:
    """Whether a task of the run ending in ``result`` is unfinished and has no message
    in ``queues`` (the stages' queues) or with a worker."""
    tasks = unfinished(result)
    return bool(tasks) and all(message_exists(client, queues, task.id) is False for task in tasks)
