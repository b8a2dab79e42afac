"""A stand-in for the Residency Scheduler backend, used by the local lab.

Same stack as the real system (FastAPI, prometheus_client with the real metric
names, Loguru logs in the real formats, PostgreSQL through a connection pool,
Redis as the schedule cache); see :mod:`scheduler.repository` and
:mod:`scheduler.cache`. ``python -m scheduler.worker`` stands in for the Celery worker.
"""

__version__ = "0.1.0"
