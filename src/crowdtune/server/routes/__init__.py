"""The JSON API, one ``APIRouter`` per resource; :func:`crowdtune.server.create_app` mounts each
under ``/api/v1``.

- :mod:`~crowdtune.server.routes.projects`: projects and their items;
- :mod:`~crowdtune.server.routes.tasks`: tasks and their responses (votes, revisions, scores);
- :mod:`~crowdtune.server.routes.exports`: every answer of a project as a file;
- :mod:`~crowdtune.server.routes.stats`: a project's stats and leaderboard;
- :mod:`~crowdtune.server.routes.rounds`: Crowd-SFT rounds, their jobs and the model lineage.

Routes take what they need from :mod:`crowdtune.server.deps` and call the store's repository
or, for what the web pages do too, :mod:`crowdtune.server.services`.
"""
