"""The Celery application: ``celery -A tasks worker -Q landmark|agegender|storage``.

Task modules are thin wrappers around plain functions; ``tasks/shared/graph.py`` chains them:

- ``tasks/landmark.py``  (queue ``landmark``):  boxes and landmark points, first
- ``tasks/agegender.py`` (queue ``agegender``): age and gender of the faces found
- ``tasks/storage.py``   (queue ``storage``):   last, writing ``output/``
"""

from celery import Celery

from tasks.shared.graph import QUEUES  # one queue per stage; celeryconfig.py routes each task module to its queue

__all__ = ["QUEUES", "app"]

app = Celery("tasks")
app.config_from_object("celeryconfig")
