"""Gunicorn settings for the flask-gunicorn-gthread target; mirrored in target.toml [settings].

--bind, --workers and --threads come from the harness command line (--threads overrides
`threads` below: a tuned run gives more).
"""

import os

worker_class = "gthread"
# Gunicorn docs, `threads`: "generally in the 2-4 x $(NUM_CORES) range"; the target has
# 1 core and its requests mostly wait on I/O, so the top of the range.
threads = 4
# Gunicorn's default: the most connections one worker holds, busy or kept alive.
worker_connections = 1000
# The app sizes its shared upstream and database pools to the thread count: see on_starting.
DB_POOL_MAX = 20
# No --preload: each worker imports the app itself, so each gets its own upstream pool.
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


def on_starting(server):
    """Size the app's pools to the thread count the workers run with (--threads if given).

    One upstream connection per thread, and one database connection per thread up to
    DB_POOL_MAX (as flask-granian's pool of 20): set in the master before the workers
    fork, so each inherits it.
    """
    count = server.cfg.threads
    os.environ["GWBENCH_UPSTREAM_POOL_SIZE"] = str(count)
    os.environ["GWBENCH_DB_POOL_SIZE"] = str(min(count, DB_POOL_MAX))
