"""The job log the matrix reads: one line per event, appended to JOB_LOG
(default: jobs.log) as `job=NAME pid=PID at=UNIX_TIME key=value ...`."""
import os
import time

JOB_LOG = os.environ.get("JOB_LOG", "jobs.log")


def record(job, **fields):
    extra = "".join(f" {key}={value}" for key, value in fields.items())
    line = f"job={job} pid={os.getpid()} at={time.time():.3f}{extra}\n"
    # One write with O_APPEND: lines from several processes never interleave.
    fd = os.open(JOB_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
