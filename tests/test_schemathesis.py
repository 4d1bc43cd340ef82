"""Property-based tests of the API against its own OpenAPI spec, with schemathesis.

Every operation under ``/api/v1`` gets generated requests (valid and invalid, from the spec)
sent in-process over ASGI, once with an admin's bearer token and once with an annotator's; no
response may be a server error (5xx, or an exception escaping the app). Path ids are drawn from
the spec (so mostly unknown ids), or are ids that exist (a seeded project and each person's
open task, so requests reach the routes' real work), or ids too large for the database. The
web pages are not in the spec (``include_in_schema=False``); a test checks that, and another
sends them generated ids. Generation is derandomized: every run sends the same requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from crowdtune.server import API_PREFIX, create_app
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.repository import add_items, create_contributor, create_project, next_task

#: Generated requests per operation and generation mode: enough to find the classic 5xx
#: (huge ids, odd bodies) while the whole file stays well under a minute on 2 cores.
EXAMPLES = 25
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    derandomize=True,  # the same requests on every run: a failure in CI repeats locally
    suppress_health_check=list(HealthCheck),
)
ITEMS = [
    {"prompt": f"q{i}", "response_a": "yes", "response_b": "no", "gold": "a", "id": f"i{i}"}
    for i in range(4)
]
SINGLE_ITEMS = [{"prompt": f"q{i}", "response": "yes", "id": f"i{i}"} for i in range(4)]


class Seeded:
    """A fresh database at ``url``: tokens, and ids that exist (a project, each person's
    open task in it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        upgrade(url)
        engine = make_engine(url)
        try:
            with session_factory(engine)() as session:
                admin, self.admin_token = create_contributor(session, "root", "admin")
                annotator, self.annotator_token = create_contributor(session, "ann")
                self.project_ids, self.task_ids = [], []
                # A project of each kind, so generated answers reach each kind's checks.
                for kind, items in (("pairwise", ITEMS), ("revision", SINGLE_ITEMS),
                                    ("rating", SINGLE_ITEMS)):  # fmt: skip
                    project = create_project(session, f"fuzzed {kind}", overlap=2, kind=kind)
                    add_items(session, project.id, items)
                    self.project_ids.append(project.id)
                    tasks = [next_task(session, project.id, p.id) for p in (admin, annotator)]
                    self.task_ids += [task.id for task in tasks if task is not None]
                self.project_id = self.project_ids[0]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return Seeded(f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'api.db'}")


@pytest.fixture(scope="module")
def api_schema(seeded: Seeded) -> Iterator[Any]:
    """The app's OpenAPI spec, loaded over ASGI; requests go to the app in-process, and
    schemathesis runs the app's lifespan (migrations, the database engine) around them."""
    from schemathesis.python.asgi import shutdown_lifespans

    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(seeded.url))
    shutdown_lifespans()  # closes the app's database engine


# Building the spec touches no database, so the operations are known when tests are collected.
# (schemathesis' own `from_fixture(...).parametrize()` would do this per operation too, but its
# lazy mode does not work with pytest 9.2, so the operations are parametrized here instead.)
SPEC = create_app("sqlite://").openapi()
OPERATIONS = [
    (method.upper(), path)
    for path, methods in SPEC["paths"].items()
    if path.startswith(API_PREFIX + "/")
    for method in methods
]


#: Ids past what the database holds: PostgreSQL's 32-bit integers, SQLite's 64-bit ones.
HUGE_IDS = [2**31, 2**63, -(2**63) - 1]


def fixed_ids(path: str, seeded: Seeded) -> list[dict[str, int]]:
    """Path parameters to try besides the generated ones: ids that exist (to get past the
    404s) and ids too large for the database (always tried, since random ones rarely are)."""
    names = re.findall(r"\{(\w+)\}", path)
    existing = {"project_id": seeded.project_ids, "task_id": seeded.task_ids}
    return [{name: value} for name in names for value in [*existing.get(name, []), *HUGE_IDS]]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_never_answers_with_a_server_error(
    api_schema: Any, seeded: Seeded, method: str, path: str, mode: GenerationMode
) -> None:
    """Generated requests (valid ones, or with ``mode`` negative, invalid ones), with the ids
    the spec allows or ids that exist, each sent with an admin's and an annotator's token."""
    operation = api_schema[path][method]
    strategy = st.one_of(
        operation.as_strategy(mode),
        *(operation.as_strategy(mode, path_parameters=ids) for ids in fixed_ids(path, seeded)),
    )

    @FAST
    @given(case=strategy)
    def check(case: Any) -> None:
        for token in (seeded.admin_token, seeded.annotator_token):
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
            )

    check()


def test_the_spec_holds_the_api_only(seeded: Seeded) -> None:
    """The web pages and static files stay out of the spec (and so out of the fuzzing)."""
    with TestClient(create_app(seeded.url)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert len(paths) >= 6
    assert all(path.startswith(API_PREFIX + "/") for path in paths), sorted(paths)


PAGES = [
    ("GET", "/projects/{project}/annotate"),
    ("GET", "/projects/{project}/next"),
    ("GET", "/projects/{project}/leaderboard"),
    ("GET", "/projects/{project}/admin"),
    ("GET", "/projects/{project}/admin/export"),
    ("GET", "/projects/{project}/admin?job={task}"),
    ("GET", "/projects/{project}/admin/jobs/{task}"),
    ("POST", "/projects/{project}/admin/jobs/{task}/cancel"),
    ("POST", "/projects/{project}/tasks/{task}/vote"),
]


def signed_in(client: TestClient, token: str) -> str:
    """Sign ``client`` in with ``token`` through the sign-in form; the session's CSRF token."""
    form = client.get("/").text
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    reply = client.post("/signin", data={"token": token, "csrf_token": nonce})
    assert reply.status_code == 200, reply.text  # the projects page, after the redirect
    return re.search(r'name="csrf_token" value="([^"]+)"', reply.text).group(1)  # type: ignore[union-attr]


def test_pages_never_answer_with_a_server_error(seeded: Seeded) -> None:
    """The pages are outside the spec, so they get generated ids here: ids that exist, huge
    ones, any integer; 404 or 403 pages, JSON errors or real pages, never a 5xx."""
    ids = st.one_of(
        st.integers(min_value=-1, max_value=5), st.sampled_from(HUGE_IDS), st.integers()
    )
    with TestClient(create_app(seeded.url)) as admin:
        annotator = TestClient(admin.app)  # the same app; its lifespan runs once
        people = [(admin, signed_in(admin, seeded.admin_token)),
                  (annotator, signed_in(annotator, seeded.annotator_token))]  # fmt: skip

        @FAST
        @given(page=st.sampled_from(PAGES), project=ids, task=ids, verdict=st.text(max_size=5))
        def check(page: tuple[str, str], project: int, task: int, verdict: str) -> None:
            method, template = page
            for client, csrf in people:
                reply = client.request(
                    method,
                    template.format(project=project, task=task),
                    json={"verdict": verdict} if method == "POST" else None,
                    headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
                    follow_redirects=False,
                )
                assert reply.status_code < 500, (method, reply.url, reply.text)

        check()
