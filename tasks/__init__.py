"""The Celery application: ``celery -A tasks worker -Q landmark|agegender|storage``.

Task modules are thin wrappers around plain functions:

- ``tasks/landmark.py``  (queue ``landmark``):  boxes and landmark points
- ``tasks/agegender.py`` (queue ``agegender``): age and gender per face
- ``tasks/storage.py``   (queue ``storage``):   the chord callback writing ``output/``
"""

from celery import Celery

# One queue per stage; celeryconfig.py routes each task module to its queue.
QUEUES = ("landmark", "agegender", "storage")

app = Celery("tasks")
app.config_from_object("celeryconfig")
