// The admin page's Crowd-SFT rounds: the round form shows only what the chosen candidate
// takes, and the round's job is followed live.
//   form: fields and point schemes carry data-candidates (the candidates they apply to); the
//         others are hidden and disabled (a disabled field is not sent), so sft/dpo get
//         max_steps, preference its model, and each its own schemes;
//   job:  while it is queued or running, its page JSON (same origin, the session cookie) is
//         polled every 2 s to move the progress bar and the message; once it ends the page
//         reloads, which shows the stored round and the lineage.
// Without this script the page works too: every field shows (labelled with the candidates it
// applies to), the server refuses what a candidate does not take, and a link refreshes the job.
"use strict";
(function () {
  const ACTIVE = ["queued", "running"];
  const POLL_MS = 2000;

  const form = document.getElementById("round-form");
  if (form) {
    const candidate = form.elements.namedItem("candidate");
    const scheme = form.elements.namedItem("scheme");
    const apply = function () {
      const chosen = candidate.value;
      form.querySelectorAll("[data-candidates]").forEach(function (element) {
        const on = element.dataset.candidates.split(" ").includes(chosen);
        element.hidden = !on;
        element.disabled = !on;
      });
      const picked = scheme.options[scheme.selectedIndex];
      if (picked && picked.disabled) {
        const first = Array.from(scheme.options).find(function (o) { return !o.disabled; });
        if (first) scheme.value = first.value;
      }
    };
    candidate.addEventListener("change", apply);
    apply();
  }

  const job = document.getElementById("job");
  if (!job || !ACTIVE.includes(job.dataset.state)) return;
  const state = document.getElementById("job-state");
  const bar = document.getElementById("job-progress");
  const percent = document.getElementById("job-percent");
  const message = document.getElementById("job-message");

  const show = function (data) {
    state.textContent = data.state;
    bar.value = data.progress;
    bar.textContent = percent.textContent = Math.round(data.progress * 100) + "%";
    message.textContent = data.message || "";
    message.className = data.state === "failed" ? "error" : "note";
  };

  const poll = async function () {
    try {
      const reply = await fetch(job.dataset.url, {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
      });
      if (reply.status === 401) { window.location.reload(); return; } // signed out: sign in
      if (reply.ok) {
        const data = await reply.json();
        show(data);
        if (!ACTIVE.includes(data.state)) { window.location.reload(); return; }
      }
    } catch (error) {
      // The server restarted or the network dropped: keep trying at the same pace.
    }
    window.setTimeout(poll, POLL_MS);
  };
  window.setTimeout(poll, POLL_MS);
})();
