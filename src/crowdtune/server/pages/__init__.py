"""Server-rendered web pages: sign in, projects, annotate, leaderboard, admin.

Authentication: ``POST /signin`` checks the pasted token and starts a session
(:func:`crowdtune.store.repository.start_session`): its random id, never the token, goes in an
HttpOnly, SameSite=Strict cookie (``Secure`` over HTTPS), and the store keeps only its hash. The
session ends at sign-out (deleted), at its absolute expiry, when idle too long (``create_app``'s
``session_hours`` and ``session_idle_minutes``) and when its token is revoked, rotated or
expires; a stale cookie is cleared. Each page carries a CSRF token derived from the session id
(an HMAC, so it belongs to that session, dies with it and cannot be guessed without it); every
cookie-authenticated POST must send it, in the form field ``csrf_token`` or the header
``X-CSRF-Token``, else 403. The sign-in form itself uses a double-submit cookie.

The annotation page (one per project kind: pairwise votes, revisions, ratings) and its
JavaScript do not call the bearer-token API: they call two same-origin, cookie-authenticated
page endpoints, ``GET /projects/{id}/next`` (the next task as JSON, 204 when all is done) and
``POST /projects/{id}/tasks/{task}/vote`` (the answer of any kind, or a skip with its reason;
with ``X-CSRF-Token`` and an ``Idempotency-Key`` fixed per task, so a double keypress stores one
answer). The same route accepts a plain form post and redirects, so the page works without
JavaScript. The JSON API stays bearer-only, with no cookie (and so no CSRF) surface. The pages'
scripts are files under ``/static`` (the Content-Security-Policy allows no inline script).

All queries go through :mod:`crowdtune.store.repository`, and what the API does too (votes,
stats, leaderboard, export, uploads, rounds, the role check) through
:mod:`crowdtune.server.services`; Jinja2 autoescapes every template, and item text is rendered
by :func:`~crowdtune.server.pages.markdown.safe_markdown`, which escapes everything first.

- :mod:`~crowdtune.server.pages.web`: cookies, CSRF, rendering, error pages;
- :mod:`~crowdtune.server.pages.markdown`: the safe Markdown subset of item text;
- :mod:`~crowdtune.server.pages.annotate`: the router of the pages every contributor uses;
- :mod:`~crowdtune.server.pages.answers`: a task as the annotation page shows it, and the
  answer a submission carries;
- :mod:`~crowdtune.server.pages.admin`: the router of the admin page and its forms;
- :mod:`~crowdtune.server.pages.models`: the model leaderboard page (admin area).
"""
