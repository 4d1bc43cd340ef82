"""The annotation page in a real browser: Playwright drives Debian's Chromium against a
``crowdtune serve`` subprocess on SQLite. An annotator signs in through the sign-in form,
votes on three items with the keys 1, 2 and 3, sees the progress bar move after each vote, and
the database then holds exactly those three votes; after signing out, the old session cookie
put back into the browser opens nothing. Item text with HTML in it shows as text and
runs nothing. A screenshot of the annotation page goes to :data:`OUTPUT`
(``tests/output/browser/annotate.png``; pytest's summary lists it after the run).

Chromium comes from apt (``make test`` installs it), never from ``playwright install``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crowdtune.server.pages.web import SESSION_COOKIE
from crowdtune.server.process import free_port, start_server, stop_server
from crowdtune.store import make_engine, session_factory, upgrade
from crowdtune.store.models import VERDICT_CODES, Response, Task
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


def test_annotate_three_items_with_the_keyboard_then_sign_out(served):
    executable = chromium_path()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - the browser-tests extra is missing
        pytest.fail("the browser tests need Playwright: pip install -e '.[browser-tests]'")
    base, token, annotator_id, project_id, url = served
    problems: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(10_000)
            # Any alert means item text ran as script; any script error or CSP violation is a bug.
            page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"),
                                              dialog.dismiss()))  # fmt: skip
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: message.type == "error" and problems.append(
                f"console: {message.text} ({message.location['url']})"))  # fmt: skip
            page.on("response", lambda reply: reply.status >= 400 and problems.append(
                f"{reply.status} {reply.request.method} {reply.url}"))  # fmt: skip

            page.goto(base + "/")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/projects")
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
        finally:
            browser.close()

    assert values == [1, 2, 3], f"the progress bar did not move one step per vote: {values}"
    assert problems == [], problems
    assert stored_votes(url, annotator_id) == [
        ("a", [ITEMS[0]["prompt"]]),
        ("b", [ITEMS[1]["prompt"]]),
        ("tie", [ITEMS[2]["prompt"]]),
    ]
