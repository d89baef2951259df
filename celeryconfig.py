"""Celery configuration: Redis as broker and result store, one queue per stage, JSON only.

Values come from the environment through ``tasks.shared.settings`` (see the README's table).
"""

from tasks import QUEUES
from tasks.shared import settings as _settings

_config = _settings.load()

broker_url = _config.redis_url
result_backend = _config.redis_url
broker_connection_retry_on_startup = True

# JSON only: a message can never make a worker unpickle something.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

imports = ("tasks.worker_setup", "tasks.landmark", "tasks.perface", "tasks.agegender", "tasks.storage")
task_routes = {f"tasks.{queue}.*": {"queue": queue} for queue in QUEUES}

# A task is acknowledged only after it ran, so a worker killed mid-task loses nothing:
# a dead pool process's task is requeued by its worker at once (reject_on_worker_lost); a
# dead worker's messages wait in Redis's "unacked" hash until a live worker's sweep finds
# them older than visibility_timeout and requeues them (kombu's QoS.restore_visible).
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1  # a worker holds no more messages than it has processes
broker_transport_options = {
    "visibility_timeout": _config.visibility_timeout,
    # kombu sweeps every 10 s but scans only every 10th time: 100 s, longer than a client waits.
    "unacked_restore_interval": max(1, _config.visibility_timeout // 10),
    "unacked_restore_throttle": 1,
    # The sweep's lock outlives a worker killed while holding it (kombu's default: 300 s).
    "unacked_mutex_expire": _config.visibility_timeout,
}

# Celery's task results are read by the requests waiting for their run, as soon as they are
# written, however long the run waited in a queue; the facade shortens their expiry once it
# has the answer. The merged outcome stays longer, under <key>:result (RESULT_TTL).
result_expires = _config.image_ttl

# A pool process loads and warms up its models before it reports for work
# (tasks/worker_setup.py); give it time to, on a slow or busy machine.
worker_proc_alive_timeout = 120

# Task events only while Flower (or the launcher) asks for them: they cost CPU on every
# task. No "task-sent" events and no STARTED states: each costs a Redis round trip per task.
worker_send_task_events = False
task_send_sent_event = False
task_track_started = False
