"""Gunicorn settings for the flask-gunicorn-gevent target; mirrored in target.toml [settings].

--bind and --workers come from the harness command line. Nothing here imports gevent:
the worker monkey-patches the standard library itself, after the fork and before it
imports the app, and patching the arbiter as well is not needed.
"""

import os

worker_class = "gevent"
# Gunicorn's default: the most clients (greenlets) one worker serves at once.
worker_connections = 1000
# The app sizes its shared upstream pool to the greenlet count (one kept connection
# each), and bounds its database pool: PostgreSQL serves a few hundred connections in
# all, so 20 per worker, as the event-loop stacks' pools. raw_env is set in the master,
# so every worker inherits it.
db_pool_size = 20
raw_env = [f"GWBENCH_UPSTREAM_POOL_SIZE={worker_connections}", f"GWBENCH_DB_POOL_SIZE={db_pool_size}"]
# No --preload: each worker imports the app itself, after gevent has patched the
# standard library, and gets its own upstream pool.
preload_app = False
timeout = 30
graceful_timeout = 30
backlog = 2048
# Gunicorn docs, `keepalive`: 1-5 s for servers facing clients directly; 5 s, as uvicorn
# and hypercorn use in the other targets.
keepalive = 5
accesslog = None
loglevel = "warning"
# Gunicorn docs (FAQ, "Blocking OS calls"): keep the worker heartbeat file in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Gunicorn >= 24 opens a control socket under ~/.gunicorn by default; concurrent
# targets would share its path, and the benchmark does not use it.
control_socket_disable = True
