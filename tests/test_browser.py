"""The annotation page in a real browser: Playwright drives Debian's Chromium against a
``crowdtune serve`` subprocess on SQLite, with the keyboard only.

- pairwise: an annotator signs in through the sign-in form, votes on three items with the keys
  1, 2 and 3, sees the progress bar move after each vote, and the database then holds exactly
  those three votes; after signing out, the old session cookie put back into the browser
  opens nothing;
- revision: the editor starts with the answer; typing changes it, the live diff marks what was
  inserted and deleted, Ctrl+Enter stores the revised text; the next task is skipped with a
  reason (Skip…, reached with Tab), stored as a skip; then the page says all is done;
- rating: a number key off the scale does nothing, those on it store their score; then done.

Item text with HTML in it shows as text and runs nothing; no page logs a script error or a
CSP violation. Screenshots go to :data:`OUTPUT` (``tests/output/browser/annotate.png``,
``revision.png``, ``rating.png``; pytest's summary lists them after the run).

Chromium comes from apt (``make test`` installs it), never from ``playwright install``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crowdtune.server.pages.web import SESSION_COOKIE
from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import VERDICT_CODES, Item, Response, Task
from crowdtune.store.repository import add_items, create_contributor, create_project

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
#: Where the screenshot of the annotation page lands, inside the checkout (git ignores it).
OUTPUT = Path(__file__).resolve().parent / "output" / "browser"
SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"
ITEMS = [
    # The first item is rendered by the server, the others by the page's script (innerHTML),
    # so both paths get text that would run if it were not escaped.
    {"prompt": "first: say hi", "response_a": SCRIPT, "response_b": "hello **there**"},
    {"prompt": "second: 2+2?", "response_a": "4", "response_b": IMAGE},
    {"prompt": "third: a colour?", "response_a": "red", "response_b": f"blue {SCRIPT}"},
]


def chromium_path() -> str:
    """Debian's Chromium; fails (never skips) with how to install it when it is missing."""
    if not Path(CHROMIUM).exists():
        found = shutil.which("chromium")
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}"
            + (f" (found {found}, which is not where Debian puts it)" if found else "")
            + "; install it with `apt-get install chromium` (`make test` does this)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, int, int, str]]:
    """A server on a fresh database: (base URL, annotator token, annotator id, project id,
    database URL). The project has overlap 1 and the three :data:`ITEMS`."""
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            create_contributor(session, "root", "admin")
            annotator, token = create_contributor(session, "ann", "annotator")
            project = create_project(session, "browser <b>demo</b>", overlap=1)
            add_items(session, project.id, ITEMS)
            ids = annotator.id, project.id
    finally:
        engine.dispose()
    port = free_port()
    server = start_server(url, port, log=tmp_path / "server.log")
    try:
        yield f"http://127.0.0.1:{port}", token, ids[0], ids[1], url
    finally:
        stop_server(server)


def stored_votes(url: str, contributor_id: int) -> list[tuple[str, list[str]]]:
    """(verdict code, item prompt) of the contributor's responses, oldest first."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Response, Task)
                .join(Task, Response.task_id == Task.id)
                .where(Response.contributor_id == contributor_id)
                .order_by(Response.id)
            ).all()
            return [(VERDICT_CODES[r.verdict], list(t.item.prompt)) for r, t in rows]
    finally:
        engine.dispose()


def playwright_api() -> Any:
    """Playwright's sync API; fails (never skips) with how to install it when it is missing."""
    try:
        from playwright import sync_api
    except ImportError:  # pragma: no cover - the browser-tests extra is missing
        pytest.fail("the browser tests need Playwright: pip install -e '.[browser-tests]'")
    return sync_api


@contextmanager
def browser_page(problems: list[str]) -> Iterator[Any]:
    """A page of a headless Chromium (1200×900) that adds to ``problems`` every alert (item text
    that ran as script), script error, console error (a CSP violation among them) and HTTP
    error reply."""
    executable = chromium_path()
    with playwright_api().sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(10_000)
            page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"),
                                              dialog.dismiss()))  # fmt: skip
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: message.type == "error" and problems.append(
                f"console: {message.text} ({message.location['url']})"))  # fmt: skip
            page.on("response", lambda reply: reply.status >= 400 and problems.append(
                f"{reply.status} {reply.request.method} {reply.url}"))  # fmt: skip
            yield page
        finally:
            browser.close()


def sign_in(page: Any, base: str, token: str) -> None:
    """Sign in through the sign-in form, with the keyboard."""
    page.goto(base + "/")
    page.focus("#token")
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/projects")


def test_annotate_three_items_with_the_keyboard_then_sign_out(served):
    expect = playwright_api().expect
    base, token, annotator_id, project_id, url = served
    problems: list[str] = []

    with browser_page(problems) as page:
        sign_in(page, base, token)
        page.click(f"a[href='/projects/{project_id}/annotate']")
        page.wait_for_url(f"{base}/projects/{project_id}/annotate")

        prompt = page.locator("#prompt")
        progress = page.locator("#progress")
        expect(prompt).to_have_text(ITEMS[0]["prompt"])
        expect(page.locator("#response-a")).to_have_text(SCRIPT)  # shown as text
        assert page.locator("#response-a script").count() == 0
        assert progress.evaluate("bar => [bar.value, bar.max]") == [0, 3]

        values = []
        for key, item in zip("123", ITEMS, strict=True):
            expect(prompt).to_have_text(item["prompt"])
            text_b = page.locator("#response-b").text_content() or ""
            before = progress.evaluate("bar => bar.value")
            page.keyboard.press(key)
            page.wait_for_function(
                "before => document.getElementById('progress').value > before", arg=before
            )
            values.append(progress.evaluate("bar => bar.value"))
            if key == "1":  # the page mid-way: one vote acknowledged, the next item shown
                expect(prompt).to_have_text(ITEMS[1]["prompt"])
                page.screenshot(path=str(OUTPUT / "annotate.png"), full_page=True)
            if item["response_b"] == IMAGE:
                assert text_b == IMAGE, "the script's innerHTML path must show tags as text"
                assert page.locator("#response-b img").count() == 0
        expect(page.locator("#done")).to_be_visible()
        expect(page.locator("#task")).to_be_hidden()
        expect(page.locator("#answered")).to_have_text("3")
        expect(page.locator("#ack")).to_contain_text("Vote stored: tie")

        # Sign out, then bring the old session cookie back: it opens nothing.
        (cookie,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
        assert cookie["value"] != token and cookie["httpOnly"], "the cookie is not the token"
        page.click("form[action='/signout'] button")
        page.wait_for_url(base + "/")
        assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
        page.context.add_cookies([cookie])
        page.goto(f"{base}/projects/{project_id}/annotate")
        page.wait_for_url(base + "/")  # sent back to the sign-in form
        expect(page.locator("#token")).to_be_visible()
        assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]

    assert values == [1, 2, 3], f"the progress bar did not move one step per vote: {values}"
    assert problems == [], problems
    assert stored_votes(url, annotator_id) == [
        ("a", [ITEMS[0]["prompt"]]),
        ("b", [ITEMS[1]["prompt"]]),
        ("tie", [ITEMS[2]["prompt"]]),
    ]


REVISION_ITEMS = [
    {"prompt": "Name a primary colour.", "response": "Red is a colour."},
    {"prompt": "Say something safe.", "response": f"text {IMAGE} {SCRIPT}"},
]
RATING_ITEMS = [
    {"prompt": "What is 2+2?", "response": "It is **4**."},
    {"prompt": "Capital of France?", "response": f"Lyon {IMAGE}"},
]


@pytest.fixture
def served_kinds(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, int], str]]:
    """A server on a fresh database with a revision and a rating project (scale 1–7), two
    items each, overlap 1: (base URL, annotator token, project ids by kind, database URL)."""
    url = f"sqlite:///{tmp_path / 'kinds.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            create_contributor(session, "root", "admin")
            _, token = create_contributor(session, "ann", "annotator")
            revision = create_project(session, "revise", kind="revision")
            add_items(session, revision.id, REVISION_ITEMS)
            rating = create_project(session, "rate", kind="rating", scale=(1, 7))
            add_items(session, rating.id, RATING_ITEMS)
            projects = {"revision": revision.id, "rating": rating.id}
    finally:
        engine.dispose()
    port = free_port()
    server = start_server(url, port, log=tmp_path / "server.log")
    try:
        yield f"http://127.0.0.1:{port}", token, projects, url
    finally:
        stop_server(server)


def stored_answers(url: str, project_id: int) -> list[dict[str, Any]]:
    """The responses in a project, oldest first: prompt, revision, score, skipped, reason,
    seconds."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(Response, Item)
                .join(Task, Response.task_id == Task.id)
                .join(Item, Task.item_id == Item.id)
                .where(Item.project_id == project_id)
                .order_by(Response.id)
            ).all()
            return [
                {"prompt": item.prompt[0], "revision": r.revision, "score": r.score,
                 "skipped": r.skipped, "reason": r.reason, "seconds": r.seconds_spent}
                for r, item in rows
            ]  # fmt: skip
    finally:
        engine.dispose()


def focus_by_tab(page: Any, selector: str, presses: int = 12) -> None:
    """Press Tab until the element ``selector`` has the focus; fails when it never does."""
    for _ in range(presses):
        if page.evaluate("s => document.activeElement === document.querySelector(s)", selector):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{selector} never got the focus after {presses} presses of Tab")


def test_revise_by_typing_then_skip_with_a_reason(served_kinds):
    expect = playwright_api().expect
    base, token, projects, url = served_kinds
    problems: list[str] = []
    with browser_page(problems) as page:
        sign_in(page, base, token)
        page.goto(f"{base}/projects/{projects['revision']}/annotate")
        editor, changes = page.locator("#editor"), page.locator("#changes")
        expect(page.locator("#prompt")).to_have_text(REVISION_ITEMS[0]["prompt"])
        expect(editor).to_be_focused()  # typing starts at once
        expect(editor).to_have_value(REVISION_ITEMS[0]["response"])
        expect(page.locator("#changes-summary")).to_have_text("none: the answer as it was")

        # Replace the first word, then add a sentence at the end: all with the keyboard.
        page.keyboard.press("Control+Home")
        page.keyboard.press("Control+Shift+ArrowRight")
        page.keyboard.type("Crimson")
        page.keyboard.press("Control+End")
        page.keyboard.type(" Blue is another.")
        revised = "Crimson is a colour. Blue is another."
        expect(editor).to_have_value(revised)
        expect(changes.locator("ins")).to_have_text(["Crimson", " Blue is another."])
        expect(changes.locator("del")).to_have_text(["Red"])
        expect(changes).to_have_text("RedCrimson is a colour. Blue is another.")
        expect(page.locator("#changes-summary")).to_have_text("+4 words, −1 word")
        expect(page.locator("#count")).to_have_text(str(len(revised)))
        page.screenshot(path=str(OUTPUT / "revision.png"), full_page=True)

        page.keyboard.press("Control+Enter")
        expect(page.locator("#ack")).to_have_text("✓ Revision stored")
        expect(page.locator("#prompt")).to_have_text(REVISION_ITEMS[1]["prompt"])
        expect(page.locator("#answered")).to_have_text("1")
        # The next answer came through the script: its HTML shows as text, in the editor too.
        expect(page.locator("#response")).to_have_text(REVISION_ITEMS[1]["response"])
        assert page.locator("#response img, #response script").count() == 0
        expect(editor).to_have_value(REVISION_ITEMS[1]["response"])
        expect(editor).to_be_focused()
        expect(changes.locator("ins, del")).to_have_count(0)

        # Skip: Tab reaches it; Enter asks why; an empty reason is not sent.
        focus_by_tab(page, "button[popovertarget='skip-box']")
        page.keyboard.press("Enter")
        expect(page.locator("#skip-box")).to_be_visible()
        expect(page.locator("#reason")).to_be_focused()
        page.keyboard.press("Enter")  # no reason yet: the browser keeps the form
        expect(page.locator("#skip-box")).to_be_visible()
        page.keyboard.type("not my field")
        page.keyboard.press("Enter")
        expect(page.locator("#done")).to_be_visible()
        expect(page.locator("#skip-box")).to_be_hidden()
        expect(page.locator("#ack")).to_have_text("✓ Skipped: the task goes to someone else")
        expect(page.locator("#answered")).to_have_text("2")
        expect(page.locator("#back")).to_be_focused()

    assert problems == [], problems
    stored = stored_answers(url, projects["revision"])
    assert [(r["prompt"], r["revision"], r["skipped"], r["reason"]) for r in stored] == [
        (REVISION_ITEMS[0]["prompt"], revised, False, None),
        (REVISION_ITEMS[1]["prompt"], None, True, "not my field"),
    ]
    assert all(r["seconds"] is not None and r["seconds"] > 0 for r in stored)


def test_rate_with_number_keys_until_done(served_kinds):
    expect = playwright_api().expect
    base, token, projects, url = served_kinds
    problems: list[str] = []
    with browser_page(problems) as page:
        sign_in(page, base, token)
        page.goto(f"{base}/projects/{projects['rating']}/annotate")
        expect(page.locator("#prompt")).to_have_text(RATING_ITEMS[0]["prompt"])
        scores = page.locator("#answer button[name=score]")
        expect(scores).to_have_text([str(n) for n in range(1, 8)])
        page.screenshot(path=str(OUTPUT / "rating.png"), full_page=True)

        page.keyboard.press("8")  # off the 1–7 scale: nothing happens
        page.keyboard.press("9")
        expect(page.locator("#answered")).to_have_text("0")
        page.keyboard.press("5")
        expect(page.locator("#ack")).to_have_text("✓ Score stored: 5")
        expect(page.locator("#prompt")).to_have_text(RATING_ITEMS[1]["prompt"])
        expect(page.locator("#response")).to_have_text(RATING_ITEMS[1]["response"])
        assert page.locator("#response img").count() == 0
        # The arrow keys walk the scale; Enter presses the focused score.
        focus_by_tab(page, "#answer button[value='1']")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#answer button[value='3']")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#done")).to_be_visible()
        expect(page.locator("#ack")).to_have_text("✓ Score stored: 3")
        expect(page.locator("#answered")).to_have_text("2")

    assert problems == [], problems
    stored = stored_answers(url, projects["rating"])
    assert [(r["prompt"], r["score"], r["skipped"]) for r in stored] == [
        (RATING_ITEMS[0]["prompt"], 5.0, False),
        (RATING_ITEMS[1]["prompt"], 3.0, False),
    ]


def test_the_admin_page_follows_a_round_job_live(served):
    """The round form shows what the chosen candidate takes; the job's progress bar moves as
    the worker reports (the page's script polls its JSON), and the page reloads once the job
    ends. The job is driven through the store here, as a worker would."""
    from crowdtune.store.repository import beat, claim_job, enqueue_job, finish_job

    expect = playwright_api().expect
    base, _, _, project_id, url = served
    engine = make_engine(url)
    problems: list[str] = []
    try:
        with session_factory(engine)() as session:
            _, admin_token = create_contributor(session, "boss", "admin")
            job = enqueue_job(session, "round", {"candidate": "dpo"}, project_id=project_id).id
            claim_job(session, "w")
            beat(session, job, "w", progress=0.25, message="group 1: step 1")
            with browser_page(problems) as page:
                sign_in(page, base, admin_token)
                page.goto(f"{base}/projects/{project_id}/admin")
                bar = page.locator("#job-progress")
                assert bar.evaluate("bar => bar.value") == 0.25
                # The form: preference first (its model shows), dpo takes max_steps instead.
                expect(page.locator("#round-model")).to_be_visible()
                expect(page.locator("#round-max_steps")).to_be_hidden()
                page.select_option("#round-candidate", "dpo")
                expect(page.locator("#round-max_steps")).to_be_visible()
                expect(page.locator("#round-model")).to_be_hidden()
                disabled = page.locator("#round-scheme option[disabled]").evaluate_all(
                    "options => options.map(o => o.value)"
                )
                assert disabled == ["shapley"]

                beat(session, job, "w", progress=0.75, message="group 2: step 3")
                page.wait_for_function(
                    "() => document.getElementById('job-progress').value === 0.75"
                )
                expect(page.locator("#job-message")).to_have_text("group 2: step 3")
                expect(page.locator("#job-percent")).to_have_text("75%")
                finish_job(session, job, "w", "failed", message="no gold votes")
                page.wait_for_selector("#job[data-state='failed']")  # after the reload
                expect(page.locator("#job-message")).to_have_text("no gold votes")
                page.screenshot(path=str(OUTPUT / "admin.png"), full_page=True)
    finally:
        engine.dispose()
    assert problems == [], problems
