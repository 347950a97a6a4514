"""The repalign service: submit zoo jobs over HTTP, query their results, schedule comparisons.

`services.main.create_app` builds the FastAPI application; `repalign serve` runs it. Jobs are
run by `services.runner` as separate processes of the ``repalign`` command line (the service
submits jobs, it does not import their internals: docs/design.md §2); job records and schedules
persist in a database through SQLAlchemy (`services.db`).
"""
