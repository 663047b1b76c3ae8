"""Alembic environment: migrations run on the connection `db.database.migrate` passes in."""

from alembic import context

from ociregistry.auth import models as _auth_models  # noqa: F401 - registers the tables
from ociregistry.blobstore import models as _upload_models  # noqa: F401 - registers the table
from ociregistry.catalog import candidates as _candidates  # noqa: F401 - registers the table
from ociregistry.db.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
