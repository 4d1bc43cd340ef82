// The annotation page: vote with the buttons or the keys 1 (A), 2 (B), 3 (tie), then load the
// next task without reloading. Calls same-origin page endpoints authenticated by the HttpOnly
// session cookie, with the page's CSRF token in X-CSRF-Token and one Idempotency-Key per task,
// so pressing a key twice stores one vote. A retry sends the time of the first try: the server
// refuses a key that comes back with another body (422). Item text arrives already escaped.
"use strict";
(function () {
  const root = document.getElementById("annotate");
  if (!root) return;
  const project = root.dataset.project;
  const csrf = root.dataset.csrf;
  const form = document.getElementById("vote");
  const ack = document.getElementById("ack");
  const labels = { a: "A is better", b: "B is better", tie: "tie" };
  let task = form.action.match(/tasks\/(\d+)\/vote$/);
  let taskId = task && document.getElementById("task").hidden === false ? task[1] : null;
  let key = form.elements.idempotency_key.value;
  let shownAt = Date.now();
  let seconds = null; // the time of the first try at this task, sent again on a retry
  let busy = false;

  function say(text, isError) {
    ack.textContent = text;
    ack.classList.toggle("err", !!isError);
    ack.classList.remove("flash");
    void ack.offsetWidth; // restart the animation
    ack.classList.add("flash");
  }

  function setBusy(value) {
    busy = value;
    for (const button of form.querySelectorAll("button")) button.disabled = value;
  }

  function showProgress(progress) {
    document.getElementById("answered").textContent = progress.answered;
    document.getElementById("total").textContent = progress.total;
    const bar = document.getElementById("progress");
    bar.max = progress.total;
    bar.value = progress.answered;
  }

  function show(next) {
    taskId = String(next.task_id);
    key = next.idempotency_key;
    form.action = "/projects/" + project + "/tasks/" + taskId + "/vote";
    form.elements.idempotency_key.value = key;
    // Safe: the server escaped all item text before adding its own small set of tags.
    document.getElementById("prompt").innerHTML = next.prompt_html;
    document.getElementById("response-a").innerHTML = next.response_a_html;
    document.getElementById("response-b").innerHTML = next.response_b_html;
    for (const id of ["response-a", "response-b"]) document.getElementById(id).scrollTop = 0;
    shownAt = Date.now();
    seconds = null;
  }

  async function loadNext() {
    const reply = await fetch("/projects/" + project + "/next", {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (reply.status === 204) {
      taskId = null;
      document.getElementById("task").hidden = true;
      document.getElementById("done").hidden = false;
      return;
    }
    if (!reply.ok) throw new Error("could not load the next task (" + reply.status + ")");
    const next = await reply.json();
    showProgress(next.progress);
    show(next);
  }

  async function vote(verdict) {
    if (busy || !taskId) return;
    setBusy(true);
    if (seconds === null) seconds = (Date.now() - shownAt) / 1000;
    try {
      const reply = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json", Accept: "application/json",
          "X-CSRF-Token": csrf, "Idempotency-Key": key,
        },
        body: JSON.stringify({ verdict: verdict, seconds: seconds }),
      });
      const body = await reply.json().catch(() => ({}));
      if (!reply.ok) throw new Error(body.detail || "vote not stored (" + reply.status + ")");
      say("✓ Vote stored: " + labels[body.verdict]);
      showProgress(body.progress);
      await loadNext();
    } catch (error) {
      say(error.message + " — press the key again to retry.", true);
    } finally {
      setBusy(false);
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const verdict = event.submitter && event.submitter.value;
    if (verdict) vote(verdict);
  });
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
    const verdict = { "1": "a", "2": "b", "3": "tie" }[event.key];
    if (verdict) { event.preventDefault(); vote(verdict); }
  });
})();
