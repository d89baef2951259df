"""Finding a run whose next message was lost with a worker machine.

kombu's Redis transport takes a message with BRPOP and only then records it in its
``unacked`` hash. A machine that dies in between, or loses power while its idle worker's
BRPOP is still open at Redis (up to a second: kombu's BRPOP timeout), takes the message
with it: it is in no queue, in no ``unacked`` record, and no sweep brings it back.

A facade can tell: Celery sends a chain's next task before it stores the result of the
one that ran, so once the run's earlier tasks have succeeded, the first unfinished ones
have a message in their queue or in ``unacked``, or they are lost. The run is then sent
again (``grpc_facade/runs.py``; every stage is keyed by the image, so a second run is
harmless).

A run is given as its task ids step by step, in graph order (a step: one task, or the
tasks of a group side by side): what :func:`task_ids` reads from a sent or frozen graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from celery import Celery
from celery.result import GroupResult, ResultBase

UNACKED = "unacked"  # kombu's Redis transport keeps delivered, unacknowledged messages here
SCAN_LIMIT = 100  # queues longer than this are not searched: the run just waits longer

Steps = list[list[str]]


def task_ids(result: ResultBase) -> Steps:
    """The task ids of the run ending in ``result``, step by step in graph order, as far
    as ``result`` knows its parents."""
    found: Steps = []
    node: ResultBase | None = result
    while node is not None:
        found.append([task.id for task in node.results] if isinstance(node, GroupResult) else [node.id])
        node = node.parent
    return found[::-1]


def unfinished(app: Celery, steps: Sequence[Sequence[str]]) -> list[str]:
    """The first tasks of the run ``steps`` that have not succeeded (all of one step, in
    graph order); empty once every task has, or when a task failed for good."""
    for step in steps:
        states = {task_id: app.AsyncResult(task_id).state for task_id in step}
        if any(state not in ("PENDING", "SUCCESS") for state in states.values()):
            return []  # failed or retrying: its message is Celery's business, not a loss
        waiting = [task_id for task_id, state in states.items() if state == "PENDING"]
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


def lost(client: redis.Redis, queues: Sequence[str], app: Celery, steps: Sequence[Sequence[str]]) -> bool:
    """Whether a task of the run ``steps`` is unfinished and has no message in ``queues``
    (the stages' queues) or with a worker."""
    tasks = unfinished(app, steps)
    return bool(tasks) and all(message_exists(client, queues, task_id) is False for task_id in tasks)
