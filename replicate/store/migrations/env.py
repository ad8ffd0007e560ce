"""Alembic environment of the results store.

:class:`~replicate.store.results_store.ResultStore` runs the migrations in code and hands its
open connection over in ``config.attributes["connection"]``, so no ``alembic.ini`` is needed.
For the ``alembic`` CLI (e.g. ``alembic revision --autogenerate``), set ``sqlalchemy.url``
instead and an engine is built from it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from replicate.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    """Configure the migration context on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit the SQL as a script (``alembic upgrade --sql``) instead of running it."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on one built from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
