"""Results store: every job, its curve, verdict, cost and environment, in a SQL database.

SQLite file by default, any SQLAlchemy URL (e.g. PostgreSQL) otherwise. The schema is owned by
the Alembic migrations in ``migrations/``; :class:`replicate.store.results_store.ResultStore`
upgrades the database to the latest revision when it is opened.
"""
