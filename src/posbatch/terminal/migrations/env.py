"""Alembic environment of the terminal journal (see posbatch.storage.run_env)."""

from posbatch.storage import run_env

run_env()
