"""Celery task of the ``agegender`` queue: age and gender of every face (``tasks/perface.py``)."""

from tasks.perface import TASKS

estimate_age_gender = TASKS["agegender"]
