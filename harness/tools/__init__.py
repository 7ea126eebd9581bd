"""Stand-alone tools beside ``gwbench``, each run as ``python -m harness.tools.<name>``.

- :mod:`harness.tools.benchdriver` (``make bench-driver``): our load driver against wrk on one fast target.
- :mod:`harness.tools.schema` (``make schema``): the results format's JSON Schema files, from the models.

Nothing is imported here, so a tool's spawned processes import only what that tool needs.
"""
