"""Settings of the django-apscheduler example: the smallest project that
serves one view and keeps its jobs in SQLite through DjangoJobStore."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_apscheduler",
    "jobs.apps.JobsConfig",
]
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
        # Several processes share the file: wait for a lock rather than fail.
        # IMMEDIATE takes the write lock when a transaction begins, so two
        # threads (the scheduler's and a job's, which logs the execution)
        # never both hold a read lock that each wants to upgrade: SQLite fails
        # one of them at once with "database is locked" instead of waiting.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}
# bellwether --timezone ZONE exports TZ to every worker; APScheduler uses the
# same zone, so tzlocal never has to guess it from a container's /etc files.
TIME_ZONE = os.environ.get("TZ", "UTC")
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APSCHEDULER_DATETIME_FORMAT = "N j, Y, f:s a"
