"""Runs of the task graph, as the facades waiting for them send and resend them.

A run ends in a task whose id is the run's, the id a facade waits on; sending a run again
(after a message of it was lost with a worker machine, ``lost_messages.py``) keeps that
id and gives its other tasks new ones.

A run for ``ProcessImage`` (:class:`SharedRun`) is claimed for its image, and requests
for the same image join it, on this facade or another. So its tasks are noted in Redis
beside the claim: every facade waiting for the run checks it, the first to find it lost
sends it again, and the run is still answered when the facade that sent it died with its
machine. A stage service's run (:class:`LocalRun`) has one waiter, its sender.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from celery import uuid
from celery.canvas import Signature

from grpc_facade.lost_messages import Steps, task_ids
from tasks import app
from tasks.shared import graph
from tasks.shared.redis_store import ImageStore


class LocalRun:
    """A run only its sender waits for: its tasks are known in this process."""

    def __init__(self, build: Callable[[], Signature]) -> None:
        """``build()`` makes the run's graph: one task, given the run's id here."""
        self.build = build
        self.id = uuid()

    def send(self) -> None:
        self.build().set(task_id=self.id).apply_async()

    def latest(self) -> Steps | None:
        """The task ids of its latest sending, step by step: its one task."""
        return [[self.id]]

    def send_again(self) -> bool:
        """Send it again; returns True (no other facade could have)."""
        self.send()
        return True


class SharedRun:
    """The run claimed for an image, which any facade waiting for it may send again."""

    def __init__(self, store: ImageStore, key: str, run_id: str) -> None:
        self.store = store
        self.key = key
        self.id = run_id
        self._note: str | None = None  # the note :meth:`latest` read

    def send(self, annotate: bool, ttl: float) -> None:
        """Send the graph for the image, noting its tasks for ``ttl`` seconds (the claim's)."""
        signature, note = self._graph(annotate)
        self.store.note_run_tasks(self.key, note, ttl)
        signature.apply_async()

    def latest(self) -> Steps | None:
        """The task ids of its latest sending, by whichever facade, as noted in Redis;
        None once the note is gone (the run answered, or its claim expired)."""
        note = self.store.run_tasks(self.key)
        noted = json.loads(note) if note is not None else {}
        self._note = note if noted.get("run") == self.id else None  # not a later run's
        return noted["steps"] if self._note else None

    def send_again(self) -> bool:
        """Send it again, unless another facade did since :meth:`latest` read the note;
        returns whether this call sent it."""
        if self._note is None:
            return False
        signature, note = self._graph(json.loads(self._note)["annotate"])
        if not self.store.replace_run_tasks(self.key, self._note, note):
            return False
        self._note = note
        signature.apply_async()
        return True

    def _graph(self, annotate: bool) -> tuple[Signature, str]:
        """The run's graph with new ids for all but its last task, and the note of them."""
        signature = graph.workflow(app, self.key, annotate, self.id)
        steps = task_ids(signature.freeze())
        return signature, json.dumps({"run": self.id, "annotate": annotate, "steps": steps})


Run = LocalRun | SharedRun  # what a facade waits for
