"""Alembic environment: runs on a connection handed over by ``taskmanager.store.migrate``."""

from alembic import context

from taskmanager.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `taskmanager db` or taskmanager.store.migrate")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
