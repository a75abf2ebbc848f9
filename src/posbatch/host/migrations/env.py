"""Alembic environment of the host store: see posbatch.storage.run_env."""

from posbatch.host._schema import metadata
from posbatch.storage import run_env

run_env(metadata)
