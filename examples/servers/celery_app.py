"""A Celery app whose beat is bellwether's scheduler role:

    bellwether -w 3 -- sh -c 'if [ "$WORKER_ROLE" = scheduler ]; then exec celery -A celery_app beat;
                              else exec celery -A celery_app worker --concurrency 1; fi'

Exactly one worker runs `celery beat`, so each tick is sent once; the others
run Celery workers that execute the tasks. The broker is CELERY_BROKER_URL
(default: redis://127.0.0.1:6379/0); the beat sends `tick` every TICK_SECONDS
(default: 1). Both ends append to JOB_LOG (default: jobs.log, see joblog.py): the beat one
`job=sent` line per task it sends, the workers one `job=run` line per task
they execute, each with the task's id.
"""
import os

from celery import Celery
from celery.signals import before_task_publish

from joblog import record

app = Celery("celery_app", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.beat_schedule = {"tick": {"task": "celery_app.tick", "schedule": float(os.environ.get("TICK_SECONDS", "1"))}}
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_prefetch_multiplier = 1
app.conf.worker_hijack_root_logger = False


@before_task_publish.connect
def sent(sender=None, headers=None, **kwargs):
    record("sent", id=headers["id"])


@app.task(bind=True)
def tick(self):
    record("run", id=self.request.id)
