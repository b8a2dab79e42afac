"""A stand-in for the Residency Scheduler backend, used by the local lab.

Same stack as the real system (FastAPI, prometheus_client with the real metric
names, Loguru logs in the real formats); canned data instead of PostgreSQL for
now, behind :mod:`scheduler.repository`.
"""

__version__ = "0.1.0"
