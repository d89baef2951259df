"""Runs of the task graph, as the facades waiting for them send and resend them.

A run ends in a task whose id is the run's, the id a facade waits on; sending a run again
(after a message of it was lost with a worker machine, ``lost_messages.py``) keeps that
id and gives its other tasks new ones.

A run for ``ProcessImage`` (:class:`SharedRun`) is claimed for its image, and requests
for the same image join it, on this facade or another. So its tasks are noted in Redis
beside the claim: every facade waiting for the run checks it, the first to find it lost
(or never sent: its sender died in between) sends it, and the run is still answered when
the facade that claimed it died with its machine. A stage service's run
(:class:`LocalRun`) has one waiter, its sender.
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

    def unsent(self) -> bool:
        return False  # sent before anyone waits for it

    def send_again(self) -> bool:
        """Send it again; returns True (no other facade could have)."""
        self.send()
        return True


class SharedRun:
    """The run claimed for an image, which any facade waiting for it may send again."""

    def __init__(self, store: ImageStore, key: str, run_id: str, annotate: bool, image: bytes | None = None) -> None:
        """``annotate`` and ``image`` (the image's bytes): what this facade sends the run
        with, should its claimant have died before sending it."""
        self.store = store
        self.key = key
        self.id = run_id
        self.annotate = annotate
        self.image = image
        self._note: str | None = None  # the note :meth:`latest` read

    def send(self) -> bool:
        """Send the graph for the image and note its tasks, unless the claim no longer
        names this run or another facade sent it; returns whether this call sent it."""
        signature, note = self._graph(self.annotate)
        if not self.store.note_run_tasks(self.key, self.id, note):
            return False
        signature.apply_async()
        return True

    def latest(self) -> Steps | None:
        """The task ids of its latest sending, by whichever facade, as noted in Redis;
        None once the note is gone (the run answered, or its claim expired)."""
        note = self.store.run_tasks(self.key)
        noted = json.loads(note) if note is not None else {}
        self._note = note if noted.get("run") == self.id else None  # not a later run's
        return noted["steps"] if self._note else None

    def unsent(self) -> bool:
        """Whether its claim still names it and no facade noted its tasks: the facade that
        claimed it died before sending it (given :meth:`latest` found no note)."""
        return self._note is None and self.store.run_claim(self.key) == self.id

    def send_again(self) -> bool:
        """Send it again, unless another facade did since :meth:`latest` read the note (or
        send it, if it was :meth:`unsent`); returns whether this call sent it."""
        if self._note is None:
            if self.image is not None:  # its claimant may have died before storing it
                self.store.put_image(self.key, self.image)
            return self.send()
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
