"""Rate limits that hold: one budget per contributor whatever the spelling of ``Bearer``, for
the API and the pages together; token and sign-in guessing slowed to a crawl per address;
unauthenticated requests limited per address; bounded memory; 429 with Retry-After everywhere."""

import re
from itertools import product

import pytest
from fastapi.testclient import TestClient

from crowdtune.server import create_app
from crowdtune.server.limits import RateLimits, Throttle, client_address
from crowdtune.server.pages.web import SESSION_COOKIE
from test_server_api import people
from test_server_pages import sign_in

API = "/api/v1"
#: Every spelling of the scheme name that HTTP says means the same: 2**6 of them.
SPELLINGS = ["".join(c.upper() if up else c for c, up in zip("bearer", ups, strict=True))
             for ups in product((False, True), repeat=6)]  # fmt: skip


def tokens_of(auth):
    return {name: header["Authorization"].split()[1] for name, header in auth.items()}


def assert_retry_after(reply, most=60):
    assert reply.status_code == 429, (reply.status_code, reply.text)
    assert 1 <= int(reply.headers["Retry-After"]) <= most, reply.headers


def test_every_spelling_of_bearer_shares_the_contributors_budget(url):
    auth = people(url)
    token = tokens_of(auth)["ann"]
    with TestClient(create_app(url, rate_limit_per_minute=3)) as client:
        board = f"{API}/projects/999/leaderboard"  # 404 after authentication: still counted
        codes = [
            client.get(board, headers={"Authorization": f"{spelling} {token}"}).status_code
            for spelling in SPELLINGS
        ]
        assert len(set(SPELLINGS)) == 64 and codes[:3] == [404] * 3, codes
        assert codes[3:] == [429] * 61, codes
        reply = client.get(board, headers={"Authorization": f"BEARER {token}"})
        assert_retry_after(reply)
        assert "3 requests per minute" in reply.json()["detail"]
        # another contributor has a budget of their own
        assert client.get(board, headers=auth["bob"]).status_code == 404


def test_bogus_tokens_make_no_budgets_and_guessing_crawls(url):
    auth = people(url)
    app = create_app(url)
    with TestClient(app) as client:
        board = f"{API}/projects/1/leaderboard"
        codes = [
            client.get(board, headers={"Authorization": f"Bearer guess-{i}"}).status_code
            for i in range(500)
        ]
        assert codes[:10] == [401] * 10 and codes[10:] == [429] * 490, codes[:20]
        reply = client.get(board, headers={"Authorization": "Bearer guess-x"})
        assert_retry_after(reply)
        assert "too many failed sign-ins or tokens" in reply.json()["detail"]
        # a right token from the same address is refused too: a blocked guesser learns nothing
        assert_retry_after(client.get(board, headers=auth["ann"]))
        # 500 bogus tokens left one address behind, and at most the 10 wrong secrets it counted
        sizes = app.state.rate_limits.sizes()
        assert sizes["contributors"] == 0 and sizes["failures"] == 1, sizes
        assert sizes["addresses"] == 1 and sizes["wrong_secrets"] <= 10, sizes


def test_the_same_wrong_token_again_counts_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'again.db'}"
    auth = people(url)
    with TestClient(create_app(url)) as client:
        board = f"{API}/projects/1/leaderboard"
        stale = {"Authorization": "Bearer revoked-yesterday"}
        assert {client.get(board, headers=stale).status_code for _ in range(40)} == {401}
        assert client.get(board, headers=auth["ann"]).status_code == 404


def test_sign_in_guessing_is_limited_per_address(url):
    auth = people(url)
    with TestClient(create_app(url)) as client:
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)

        def attempt(token):
            return client.post("/signin", data={"token": token, "csrf_token": nonce},
                               follow_redirects=False)  # fmt: skip

        codes = [attempt(f"guess-{i}").status_code for i in range(30)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429] * 20, codes
        reply = attempt("guess-x")
        assert_retry_after(reply)
        assert reply.headers["content-type"].startswith("text/html")
        assert "Too many requests" in reply.text
        # the right token is refused as well until the address waited
        assert_retry_after(attempt(tokens_of(auth)["ann"]))
        # another address is not affected (TestClient names its client "testclient")
        other = TestClient(client.app, client=("203.0.113.7", 50000))
        assert sign_in(other, tokens_of(auth)["ann"]).status_code == 303


def test_a_stale_session_cookie_counts_once_but_guessed_session_ids_crawl(tmp_path):
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    auth = people(url)
    with TestClient(create_app(url)) as client:
        assert sign_in(client, tokens_of(auth)["ann"]).status_code == 303
        stale = client.cookies[SESSION_COOKIE]
        page = client.get("/projects").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert client.post("/signout", data={"csrf_token": csrf}).status_code == 200
        # a browser that kept the old cookie, browsing on: sent back to sign in, never blocked
        for _ in range(30):
            client.cookies.set(SESSION_COOKIE, stale, domain="testserver.local")
            reply = client.get("/projects", follow_redirects=False)
            assert reply.status_code == 303, reply.status_code
        assert sign_in(client, tokens_of(auth)["ann"]).status_code == 303
        # guessed session ids are failures like guessed tokens
        guesser = TestClient(client.app, client=("198.51.100.9", 50000))
        codes = []
        for i in range(15):
            guesser.cookies.set(SESSION_COOKIE, f"guess-{i}", domain="testserver.local")
            codes.append(guesser.get("/projects", follow_redirects=False).status_code)
        assert codes == [303] * 10 + [429] * 5, codes


def test_cookie_routes_share_the_contributors_budget_with_the_api(url):
    auth = people(url)
    with TestClient(create_app(url, rate_limit_per_minute=5)) as client:
        project = client.post(f"{API}/projects", json={"name": "p"}, headers=auth["root"])
        project = project.json()["id"]
        assert sign_in(client, tokens_of(auth)["ann"]).status_code == 303
        codes = [client.get("/projects").status_code for _ in range(3)]
        codes.append(client.get(f"{API}/projects/{project}/leaderboard", headers=auth["ann"]))
        codes[-1] = codes[-1].status_code
        codes.append(client.get(f"/projects/{project}/leaderboard").status_code)
        assert codes == [200] * 5, codes
        page = client.get("/projects")
        assert_retry_after(page)
        assert page.headers["content-type"].startswith("text/html")
        assert "Too many requests" in page.text and "5 requests per minute" in page.text
        as_json = client.get(f"/projects/{project}/next", headers={"Accept": "application/json"})
        assert_retry_after(as_json)
        assert "5 requests per minute" in as_json.json()["detail"]
        assert_retry_after(client.get(f"{API}/projects/{project}/leaderboard", headers=auth["ann"]))


def test_unauthenticated_requests_are_limited_per_address(tmp_path):
    url = f"sqlite:///{tmp_path / 'anon.db'}"
    people(url)
    with TestClient(create_app(url, rate_limit_per_minute=4)) as client:
        codes = [client.get(path).status_code for path in ("/", "/static/app.css", "/", "/nope")]
        assert codes == [200, 200, 200, 404], codes
        page = client.get("/")
        assert_retry_after(page)
        assert "too many requests without signing in" in page.text
        assert_retry_after(client.get(f"{API}/projects"))  # 401 before; refused now


def test_the_load_tests_setting_never_throttles(tmp_path):
    """process.start_server passes --rate-limit 100000000: the contributors' and addresses'
    budgets are then far beyond what a load test sends."""
    limits = RateLimits(100_000_000)
    assert all(limits.contributors.hit(1) == 0 for _ in range(20_000))
    assert all(limits.addresses.hit("127.0.0.1") == 0 for _ in range(20_000))


# ---------------------------------------------------------------------------------------------
# the budgets themselves


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_throttle_allows_a_burst_then_its_rate():
    clock = Clock()
    throttle = Throttle(per_minute=6, burst=3, clock=clock)
    assert [throttle.hit("a") for _ in range(3)] == [0, 0, 0]
    assert throttle.hit("a") == pytest.approx(10.0)  # one every 10 s after the burst
    assert throttle.wait("a") == pytest.approx(10.0) and throttle.hit("b") == 0
    clock.now = 10.0
    assert throttle.hit("a") == 0 and throttle.hit("a") == pytest.approx(10.0)
    # forced events (failures that happened) push the wait further out
    for _ in range(3):
        throttle.hit("a", force=True)
    assert throttle.wait("a") == pytest.approx(40.0)


def test_a_key_with_nothing_owed_never_waits():
    """At times where ``now + interval - now - interval`` rounds above 0 (a first version
    refused some new keys of a one-event throttle by 1e-13 s)."""
    clock = Clock()
    throttle = Throttle(per_minute=0.1, burst=1, clock=clock)
    for step in range(1000):
        clock.now = 7638.657691407 + step * 0.001
        assert throttle.hit(step) == 0, clock.now


def test_a_throttle_keeps_bounded_memory():
    clock = Clock()
    throttle = Throttle(per_minute=60, burst=5, max_keys=100, clock=clock)
    for key in range(10_000):
        throttle.hit(key)
    assert len(throttle) == 100
    # keys whose time has passed are forgotten as new ones come
    clock.now = 3600.0
    for key in range(10_000, 10_050):
        throttle.hit(key)
    assert len(throttle) == 50
    with pytest.raises(ValueError, match="per_minute > 0"):
        Throttle(per_minute=0, burst=1)


@pytest.mark.parametrize(
    ("host", "key"),
    [("192.0.2.1", "192.0.2.1"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
     ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"), ("::ffff:192.0.2.1", "192.0.2.1"),
     ("testclient", "testclient")],
)  # fmt: skip
def test_addresses_are_counted_by_ip_and_ipv6_by_its_64(host, key):
    assert client_address({"client": (host, 1234)}) == key
    assert client_address({"client": None}) == "unknown"
