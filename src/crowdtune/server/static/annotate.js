// The annotation page, for the three project kinds: answer a task, then load the next one
// without reloading.
//   pairwise: the buttons or the keys 1 (A), 2 (B), 3 (tie);
//   revision: edit the answer in the editor (a live word-level diff shows the edit, a counter
//             its length), Ctrl+Enter (or Cmd+Enter) submits;
//   rating:   the score buttons, or the key shown on each (digits; the arrow keys move along
//             the scale);
//   revision and rating: Skip… asks why (a popover), and the reason goes with the skip.
// Calls same-origin page endpoints authenticated by the HttpOnly session cookie, with the
// page's CSRF token in X-CSRF-Token and one Idempotency-Key per task, so pressing a key twice
// stores one answer. A retry after a lost reply sends the time of the first try: the server
// refuses a key that comes back with another body (422). Item text arrives already escaped.
"use strict";
(function () {
  const root = document.getElementById("annotate");
  if (!root) return;
  const project = root.dataset.project;
  const csrf = root.dataset.csrf;
  const ack = document.getElementById("ack");
  const form = document.getElementById("answer");
  const forms = Array.from(root.querySelectorAll("form.task-form")); // the answer's, the skip's
  const skipBox = document.getElementById("skip-box");
  const skipForm = document.getElementById("skip");
  let taskId = root.dataset.task || null;
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
    for (const f of forms) for (const button of f.querySelectorAll("button")) button.disabled = value;
  }

  function showProgress(progress) {
    document.getElementById("answered").textContent = progress.answered;
    document.getElementById("total").textContent = progress.total;
    const bar = document.getElementById("progress");
    bar.max = progress.total;
    bar.value = progress.answered;
  }

  // Whether a key press is typing in a field (then it is text, not a shortcut).
  function typing(event) {
    const target = event.target;
    return !!target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA");
  }

  function setHtml(id, html) {
    const element = document.getElementById(id);
    element.innerHTML = html; // safe: the server escaped all item text before adding its tags
    element.scrollTop = 0;
  }

  // ------------------------------------------------------------------------------------------
  // what each kind shows and sends

  function pairwise() {
    const verdicts = { "1": "a", "2": "b", "3": "tie" };
    return {
      retry: "press the key again to retry",
      show(next) {
        setHtml("response-a", next.response_a_html);
        setHtml("response-b", next.response_b_html);
      },
      fromForm(event) {
        const verdict = event.submitter && event.submitter.value;
        return verdict ? { verdict: verdict } : null;
      },
      onKey(event) {
        if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event)) return;
        const verdict = verdicts[event.key];
        if (verdict) { event.preventDefault(); submit({ verdict: verdict }); }
      },
      focus() {},
    };
  }

  function revision() {
    const editor = document.getElementById("editor");
    const count = document.getElementById("count");
    const counter = document.getElementById("counter");
    const changes = document.getElementById("changes");
    const summary = document.getElementById("changes-summary");
    const limit = Number(editor.dataset.limit);
    const words = (n) => n + (n === 1 ? " word" : " words");
    let original = editor.dataset.original;
    let timer = 0;

    function showDiff() {
      clearTimeout(timer);
      timer = 0;
      const pieces = window.crowdtuneDiff.diff(original, editor.value);
      window.crowdtuneDiff.render(pieces, changes);
      const n = window.crowdtuneDiff.counts(pieces);
      summary.textContent = editor.value === original ? "none: the answer as it was"
        : "+" + words(n.inserted) + ", −" + words(n.deleted);
    }

    function update() {
      // Characters as the server counts them (code points, not UTF-16 units).
      const length = Array.from(editor.value).length;
      count.textContent = length.toLocaleString("en");
      counter.classList.toggle("over", length > limit);
      clearTimeout(timer);
      timer = setTimeout(showDiff, 120); // at most one diff per pause in typing
    }

    editor.addEventListener("input", update);
    update();
    showDiff();
    return {
      retry: "press Ctrl+Enter to retry",
      show(next) {
        setHtml("response", next.response_html);
        original = next.original;
        editor.value = next.prefill;
        editor.scrollTop = 0;
        editor.setSelectionRange(0, 0);
        update();
        showDiff();
      },
      fromForm() {
        return { revision: editor.value };
      },
      onKey(event) {
        if (!(event.ctrlKey || event.metaKey) || event.key !== "Enter" || event.repeat) return;
        if (skipBox && skipBox.contains(event.target)) return;
        event.preventDefault();
        submit({ revision: editor.value });
      },
      focus() {
        editor.focus();
      },
    };
  }

  function rating() {
    const buttons = Array.from(form.querySelectorAll("button[name=score]"));
    const byKey = new Map(buttons.filter((b) => b.dataset.key).map((b) => [b.dataset.key, b]));
    const field = document.getElementById("score-field"); // a scale too long for buttons
    return {
      retry: "press the key again to retry",
      show(next) {
        setHtml("response", next.response_html);
        if (field) field.value = "";
      },
      fromForm(event) {
        const button = event.submitter;
        if (button && button.name === "score") return { score: Number(button.value) };
        return field && field.value !== "" ? { score: Number(field.value) } : null;
      },
      onKey(event) {
        if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event)) return;
        const button = byKey.get(event.key);
        if (button) {
          event.preventDefault();
          submit({ score: Number(button.value) });
          return;
        }
        // The arrow keys move along the scale's buttons.
        const at = buttons.indexOf(document.activeElement);
        const step = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
        if (at >= 0 && step) {
          event.preventDefault();
          buttons[Math.min(buttons.length - 1, Math.max(0, at + step))].focus();
        }
      },
      focus() {},
    };
  }

  const view = { pairwise: pairwise, revision: revision, rating: rating }[root.dataset.kind]();

  // ------------------------------------------------------------------------------------------
  // loading and submitting

  function show(next) {
    taskId = String(next.task_id);
    key = next.idempotency_key;
    for (const f of forms) {
      f.action = "/projects/" + project + "/tasks/" + taskId + "/vote";
      f.elements.idempotency_key.value = key;
    }
    setHtml("prompt", next.prompt_html);
    view.show(next);
    shownAt = Date.now();
    seconds = null;
  }

  function finished() {
    taskId = null;
    document.getElementById("task").hidden = true;
    document.getElementById("done").hidden = false;
    document.getElementById("back").focus();
  }

  async function loadNext() {
    const reply = await fetch("/projects/" + project + "/next", {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (reply.status === 204) return finished();
    if (!reply.ok) throw new Error("could not load the next task (" + reply.status + ")");
    const next = await reply.json();
    showProgress(next.progress);
    show(next);
  }

  async function submit(answer) {
    if (busy || !taskId || !answer) return;
    const focused = document.activeElement;
    setBusy(true);
    if (seconds === null) seconds = (Date.now() - shownAt) / 1000;
    let stored = false;
    try {
      const reply = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json", Accept: "application/json",
          "X-CSRF-Token": csrf, "Idempotency-Key": key,
        },
        body: JSON.stringify(Object.assign({}, answer, { seconds: seconds })),
      });
      const body = await reply.json().catch(() => ({}));
      if (!reply.ok) {
        if (reply.status < 500) seconds = null; // refused, so nothing was stored: time anew
        throw new Error(body.detail || "not stored (" + reply.status + ")");
      }
      stored = true;
      if (skipBox && skipBox.matches(":popover-open")) skipBox.hidePopover();
      if (skipForm) skipForm.reset();
      say("✓ " + body.message);
      showProgress(body.progress);
      await loadNext();
    } catch (error) {
      say(error.message + (stored ? " — reload the page." : " — " + view.retry + "."), true);
    } finally {
      setBusy(false);
      // Keep the keyboard where it was (a disabled button lost it), else on the task's field.
      if (!taskId) return;
      const visible = focused && focused.isConnected
        && (!focused.checkVisibility || focused.checkVisibility());
      if (visible && focused !== document.body && !(skipBox && skipBox.contains(focused))) {
        focused.focus();
      } else view.focus();
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit(view.fromForm(event));
  });
  if (skipForm) {
    skipForm.addEventListener("submit", function (event) {
      event.preventDefault();
      submit({ skip: true, reason: skipForm.elements.reason.value });
    });
    skipBox.addEventListener("toggle", function (event) {
      if (event.newState === "open") skipForm.elements.reason.focus();
      else if (taskId && !root.contains(document.activeElement)) view.focus();
    });
  }
  document.addEventListener("keydown", function (event) {
    view.onKey(event);
  });
})();
