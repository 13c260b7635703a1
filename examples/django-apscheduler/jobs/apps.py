import os

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        # Only the worker bellwether made the scheduler starts one: the
        # others serve requests. (Without this line every gunicorn worker
        # starts a scheduler, each job runs once per worker, and each worker's
        # add_job races the others' for the same primary key.)
        if os.environ.get("WORKER_ROLE") != "scheduler":
            return
        from apscheduler.schedulers.background import BackgroundScheduler
        from django.conf import settings
        from django_apscheduler.jobstores import DjangoJobStore

        from . import tasks

        scheduler = BackgroundScheduler(timezone=settings.TIME_ZONE)
        scheduler.add_jobstore(DjangoJobStore(), "default")
        # Fixed ids and replace_existing: a new scheduler (after a crash or a
        # reload) updates the stored jobs instead of adding duplicates.
        scheduler.add_job(tasks.tick, "cron", second=os.environ.get("TICK_CRON_SECOND", "*/10"),
                          id="tick", max_instances=1, replace_existing=True)
        scheduler.add_job(tasks.report, "interval", seconds=int(os.environ.get("REPORT_SECONDS", "30")),
                          id="report", max_instances=1, replace_existing=True)
        scheduler.start()
        self.scheduler = scheduler
