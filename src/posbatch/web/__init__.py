"""The back office console: server-rendered pages (FastAPI + Jinja2 + vendored htmx) for
operations, the support desk and merchants, over :mod:`posbatch.backoffice`.

    app = create_app(BackOffice(store))
    uvicorn.run(app, host="127.0.0.1", port=8080)

``posbatch backoffice serve`` (:mod:`posbatch.web.cli`) does that with the host's store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ROUTES", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy: `posbatch --help` mounts posbatch.web.cli without loading FastAPI.
    if name in __all__:
        from posbatch.web import _app  # noqa: PLC0415

        return getattr(_app, name)
    raise AttributeError(name)
