"""The HTTP side of crowdtune: a FastAPI app that collects pairwise votes into the store.

:func:`create_app` builds the app (JSON API under ``/api/v1``, OpenAPI docs at ``/docs``);
``crowdtune serve`` runs it with uvicorn. The server checks tokens and roles, limits request
sizes and rates, and calls :mod:`crowdtune.store.repository` for everything it reads or writes.
Needs the ``server`` extra.
"""

from crowdtune.server.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
