"""The Residency Scheduler's PostgreSQL schema and the lab's seed data (``python -m scheduler.db.seed``)."""
