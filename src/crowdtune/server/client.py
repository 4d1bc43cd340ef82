"""A scripted crowd member as a client of the HTTP API, like any person with a token.

:func:`simulate_crowd` asks ``GET /api/v1/projects/{id}/tasks/next`` for a task and answers it
through ``POST /api/v1/tasks/{task_id}/responses`` with what a contributor of one behaviour of
:mod:`crowdtune.crowd.scripted` would submit, until nothing is left (204) or it answered ``n``.
The API never reveals an item's gold, so what the client knows of the truth comes from the data
source the items were imported from: :func:`references_from` builds the table from a revision
source (CaR's expert revisions, ``@car``) or a comparison source (``@pandalm``, an arena CSV).

It retries a 429 or 503 after the ``Retry-After`` the server sends, and a dropped connection
with the same ``Idempotency-Key``, so a retried answer is stored once.

>>> key_of("pairwise", {"prompt": "p", "response_a": "x", "response_b": "y"})
('p', 'x', 'y')
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from crowdtune.crowd.scripted import behaviour_kind, proxy_truth, revise, vote
from crowdtune.datasets.registry import load_comparisons, load_revisions
from crowdtune.records import join_turns

__all__ = [
    "API_PREFIX",
    "ApiError",
    "Project",
    "key_of",
    "references_from",
    "resolve_project",
    "simulate_crowd",
]

API_PREFIX = "/api/v1"
#: Statuses worth waiting for: the rate limit (429) and a busy database (503).
RETRY_STATUSES = frozenset({429, 503})
#: Longest wait honoured from a ``Retry-After`` header, in seconds (a longer one is capped).
MAX_RETRY_AFTER = 60.0
#: Retries of one request refused with 429/503 before :class:`ApiError` is raised.
MAX_RETRIES = 20
#: Retries of one request whose connection failed (a server restarting; not one that is down).
MAX_TRANSPORT_RETRIES = 5

#: An item's texts as the API shows them: ``(prompt, response)`` for revision and rating items,
#: ``(prompt, response_a, response_b)`` for pairwise ones (turns joined by
#: :func:`~crowdtune.records.join_turns`).
ItemKey = tuple[str, ...]


class ApiError(RuntimeError):
    """The server refused a request for good (not a 429/503 retried away): names the request,
    the status and the server's message."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {detail}")
        self.status = status


class Project:
    """The project a scripted crowd works on: its id, name and kind."""

    __slots__ = ("id", "kind", "name")

    def __init__(self, id: int, name: str, kind: str) -> None:
        self.id, self.name, self.kind = id, name, kind

    def __repr__(self) -> str:
        return f"Project(id={self.id}, name={self.name!r}, kind={self.kind!r})"


def key_of(kind: str, item: Mapping[str, str]) -> ItemKey:
    """The key of a task's ``item`` (as the API serves it) in a references table."""
    if kind == "pairwise":
        return (item["prompt"], item["response_a"], item["response_b"])
    return (item["prompt"], item["response"])


def references_from(src: str, kind: str) -> dict[ItemKey, str]:
    """What a client knows of the truth of the items imported from ``src``.

    Parameters
    ----------
    src
        For a revision or rating project, a revision source of
        :func:`~crowdtune.datasets.registry.load_revisions` (``@car``, ``@car:train``, a JSON
        Lines file): each answer's reference revision (CaR's expert revision). For a pairwise
        project, a comparison source of :func:`~crowdtune.datasets.registry.load_comparisons`
        (``@pandalm``, an arena CSV): each pair's verdict, ``"a"``, ``"b"`` or ``"tie"``.
    kind
        The project's kind.

    Returns
    -------
    dict
        Keyed by :func:`key_of` of the item each record becomes on import.
    """
    if kind == "pairwise":
        return {
            (join_turns(c.prompt), join_turns(c.response_a), join_turns(c.response_b)): (
                c.verdict.name.lower()
            )
            for c in load_comparisons(src)
        }
    return {
        (join_turns(r.prompt), r.original): r.reference or r.revised for r in load_revisions(src)
    }


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:500]
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:500]


def _retry_after(reply: httpx.Response, attempt: int) -> float:
    """Seconds to wait before retrying: the server's ``Retry-After``, else a doubling backoff."""
    try:
        seconds = float(reply.headers["Retry-After"])
    except (KeyError, ValueError):
        seconds = 0.1 * 2**attempt
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    counts: Counter[str],
    sleep: Callable[[float], None],
    **options: Any,
) -> httpx.Response:
    """``client.request`` retried on 429/503 (after ``Retry-After``) and dropped connections;
    any other status of 400 or more raises :class:`ApiError`."""
    dropped = 0
    for attempt in range(MAX_RETRIES + 1):
        try:
            reply = client.request(method, url, **options)
        except httpx.TransportError as exc:
            if dropped == MAX_TRANSPORT_RETRIES:
                raise ApiError(method, url, 0, f"no answer: {exc}") from exc
            counts["retried"] += 1
            sleep(0.1 * 2**dropped)
            dropped += 1
            continue
        if reply.status_code in RETRY_STATUSES and attempt < MAX_RETRIES:
            counts["retried"] += 1
            sleep(_retry_after(reply, attempt))
            continue
        if reply.status_code >= 400:
            raise ApiError(method, url, reply.status_code, _detail(reply))
        return reply
    raise AssertionError("unreachable")  # pragma: no cover


def resolve_project(
    client: httpx.Client,
    url: str,
    project: int | str,
    *,
    token: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Project:
    """The project ``project`` names: a name, or an id (a whole number that names no project),
    looked up in ``GET /api/v1/projects``. Raises ``ValueError`` naming the known projects when
    none fits."""
    return _resolve(client, url, project, {"Authorization": f"Bearer {token}"}, Counter(), sleep)


def _resolve(
    client: httpx.Client,
    url: str,
    project: int | str,
    auth: Mapping[str, str],
    counts: Counter[str],
    sleep: Callable[[float], None],
) -> Project:
    listed = _request(
        client, "GET", f"{url}{API_PREFIX}/projects", headers=auth, counts=counts, sleep=sleep
    )
    projects = [Project(int(p["id"]), str(p["name"]), str(p["kind"])) for p in listed.json()]
    wanted = str(project)
    for found in projects:
        if found.name == wanted:
            return found
    for found in projects:
        if wanted.isdigit() and found.id == int(wanted):
            return found
    known = ", ".join(f"{p.id} ({p.name})" for p in projects) or "none"
    raise ValueError(f"no project {wanted!r} on {url}; the projects are: {known}")


def _answer(
    behaviour: str,
    kind: str,
    item: Mapping[str, str],
    references: Mapping[ItemKey, str],
    pool: list[str],
    rng: np.random.Generator,
    counts: Counter[str],
) -> dict[str, Any]:
    """The response body a contributor of ``behaviour`` sends for ``item``; counts whether the
    truth was known (``reference``) or not (``fallback``)."""
    key = key_of(kind, item)
    if kind == "pairwise":
        truth = references.get(key)
        if truth is None:  # the pair may have been imported the other way round
            swapped = references.get((key[0], key[2], key[1]))
            truth = None if swapped is None else {"a": "b", "b": "a"}.get(swapped, swapped)
        counts["reference" if truth is not None else "fallback"] += 1
        if truth is None:
            truth = proxy_truth(item["response_a"], item["response_b"])
        return {"verdict": vote(behaviour, truth, rng)}  # type: ignore[arg-type]
    reference = references.get(key)
    counts["reference" if reference is not None else "fallback"] += 1
    text = revise(behaviour, item["prompt"], item["response"], reference, rng, pool=pool)
    pool.append(item["response"])
    return {"revision": text}


def simulate_crowd(
    url: str,
    token: str,
    project: int | str,
    behaviour: str,
    *,
    n: int | None = None,
    references: Mapping[ItemKey, str] | None = None,
    seed: int = 0,
    progress: bool = True,
    pool: Sequence[str] | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Answer a project's tasks as a scripted contributor of ``behaviour`` until none is left.

    Parameters
    ----------
    url
        The server's base URL (``http://127.0.0.1:8000``).
    token
        The contributor's bearer token (an annotator's or admin's).
    project
        The project's id or name.
    behaviour
        One of :data:`~crowdtune.crowd.scripted.REVISION_BEHAVIOURS` for a revision project, of
        :data:`~crowdtune.crowd.scripted.VOTE_BEHAVIOURS` for a pairwise one.
    n
        Answer at most this many tasks (default: until the server has none left, 204).
    references
        What the client knows of the truth (:func:`references_from`): reference revisions, or
        verdicts. Without one, an expert cleans the answer up and voters take the longer answer
        as the truth (:func:`~crowdtune.crowd.scripted.proxy_truth`).
    seed
        Seeds the behaviour's randomness: the same seed on the same tasks gives the same answers.
    progress
        Show a progress line on stderr.
    pool
        Texts an adversary draws from; by default the references' answers and the answers of
        the tasks seen so far (other items' answers: on topic for none of them).
    client
        An ``httpx.Client`` to send through (a FastAPI ``TestClient`` in tests), left open;
        by default one of its own.
    sleep
        Waits between retries (tests pass a no-op).

    Returns
    -------
    dict
        Counts per outcome: ``answered`` (stored, 201), ``replayed`` (a retry the server had
        stored already, 200), ``reference`` / ``fallback`` (whether the item's truth was known),
        ``retried`` (requests retried after a 429, 503 or dropped connection).

    Raises
    ------
    ValueError
        An unknown behaviour, one that does not fit the project's kind (a rating project has
        none yet), or an unknown project.
    ApiError
        The server refused a request for good (401 for a bad token, 403 for a viewer).
    """
    kind_of_behaviour = behaviour_kind(behaviour)
    if n is not None and n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    url = url.rstrip("/")
    own = client is None
    http = httpx.Client(timeout=30.0) if client is None else client
    auth = {"Authorization": f"Bearer {token}"}
    counts: Counter[str] = Counter()
    try:
        found = _resolve(http, url, project, auth, counts, sleep)
        wanted = "pairwise" if kind_of_behaviour == "vote" else "revision"
        if found.kind != wanted:
            raise ValueError(
                f"a {behaviour} contributor answers {wanted} projects; project {found.id} "
                f"({found.name}) is a {found.kind} project"
            )
        table: Mapping[ItemKey, str] = references or {}
        texts = list(pool) if pool is not None else [key[-1] for key in table]
        rng = np.random.default_rng(seed)
        columns = (SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        console = Console(stderr=True)
        with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
            line = bar.add_task(f"{behaviour} on project {found.id}", total=n)
            while n is None or counts["answered"] + counts["replayed"] < n:
                reply = _request(http, "GET", f"{url}{API_PREFIX}/projects/{found.id}/tasks/next",
                                 headers=auth, counts=counts, sleep=sleep)  # fmt: skip
                if reply.status_code == 204:
                    break
                task = reply.json()
                body = _answer(behaviour, found.kind, task["item"], table, texts, rng, counts)
                answered = _request(
                    http,
                    "POST",
                    f"{url}{API_PREFIX}/tasks/{task['task_id']}/responses",
                    json=body,
                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                    counts=counts,
                    sleep=sleep,
                )
                counts["answered" if answered.status_code == 201 else "replayed"] += 1
                bar.advance(line)
    finally:
        if own:
            http.close()
    return {name: counts[name] for name in ("answered", "replayed", "reference", "fallback",
                                            "retried")}  # fmt: skip
