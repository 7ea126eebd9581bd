"""Gunicorn settings for the django-gunicorn-uvicornworker target; mirrored in target.toml [settings].

--bind and --workers come from the harness command line, which runs with
cwd = targets/django-project (app_dir). The uvicorn worker passes keepalive, backlog and
timeout on to uvicorn (keep-alive timeout, listen backlog, heartbeat interval).
"""

import os

# This folder holds the worker class; the app itself comes from the cwd.
pythonpath = os.path.dirname(os.path.abspath(__file__))
worker_class = "gwbench_uvicorn_worker.UvicornWorker"
# No --preload: each worker imports the app itself, in its own event loop.
preload_app = False
timeout = 30
graceful_timeout = 30
backlog = 2048
# Uvicorn's own default keep-alive timeout, as in targets/django-uvicorn (Gunicorn's
# default of 2 s would otherwise become uvicorn's).
keepalive = 5
accesslog = None
loglevel = "warning"
# Gunicorn docs (FAQ, "Blocking OS calls"): keep the worker heartbeat file in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Gunicorn >= 24 opens a control socket under ~/.gunicorn by default; concurrent
# targets would share its path, and the benchmark does not use it.
control_socket_disable = True
