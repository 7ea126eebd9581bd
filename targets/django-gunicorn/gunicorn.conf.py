"""Gunicorn settings for the django-gunicorn target; mirrored in target.toml [settings].

--bind and --workers come from the harness command line.
"""

import os

worker_class = "sync"
# No --preload: each worker imports the app itself, so each gets its own upstream pool.
# The harness runs this with cwd = targets/django-project (app_dir).
preload_app = False
timeout = 30
graceful_timeout = 30
backlog = 2048
# Sync workers close the connection after every response; keepalive does not apply.
keepalive = 2
accesslog = None
loglevel = "warning"
# Gunicorn docs (FAQ, "Blocking OS calls"): keep the worker heartbeat file in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Gunicorn >= 24 opens a control socket under ~/.gunicorn by default; concurrent
# targets would share its path, and the benchmark does not use it.
control_socket_disable = True
