"""Alembic environment of the catalog (see posbatch.storage.run_env)."""

from posbatch.storage import run_env

run_env()
