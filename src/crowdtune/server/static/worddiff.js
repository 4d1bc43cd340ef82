// A word-level diff of two texts, for the revision page's live view of an edit.
//
// Hand-written rather than a library: the server is offline (no CDN), and the page needs only
// the longest common subsequence of words, a few dozen lines; vendoring a diff library (jsdiff
// is some 40 KB) would be more code to keep up to date than this.
//
// The texts are cut into words and runs of white space, so the marked text keeps its spacing.
// The common start and end are set aside first (an edit is usually local), and the rest is
// aligned by the classic dynamic programme, O(n·m) in time and memory. When that middle part
// is too large for it (MAX_CELLS), the middle shows as one deletion and one insertion: still
// right, only coarser.
"use strict";
window.crowdtuneDiff = (function () {
  const TOKEN = /\s+|\S+/g;
  const MAX_CELLS = 2_000_000; // 8 MB of table: fine to redo as someone types (debounced)

  function tokens(text) {
    return text.match(TOKEN) || [];
  }

  // Add tokens to the pieces, merging with the last piece when it has the same operation.
  function push(pieces, op, words) {
    if (!words.length) return;
    const text = words.join("");
    const last = pieces[pieces.length - 1];
    if (last && last[0] === op) last[1] += text;
    else pieces.push([op, text]);
  }

  // The middle parts, aligned by their longest common subsequence of tokens.
  function align(a, b, pieces) {
    const n = a.length, m = b.length, width = m + 1;
    if (n * m > MAX_CELLS) {
      push(pieces, "-", a);
      push(pieces, "+", b);
      return;
    }
    // common[i * width + j]: the length of the longest common subsequence of a[i:] and b[j:].
    const common = new Uint32Array((n + 1) * width);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        common[i * width + j] = a[i] === b[j]
          ? common[(i + 1) * width + j + 1] + 1
          : Math.max(common[(i + 1) * width + j], common[i * width + j + 1]);
      }
    }
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { push(pieces, "=", [a[i]]); i++; j++; }
      else if (common[(i + 1) * width + j] >= common[i * width + j + 1]) push(pieces, "-", [a[i++]]);
      else push(pieces, "+", [b[j++]]);
    }
    push(pieces, "-", a.slice(i));
    push(pieces, "+", b.slice(j));
  }

  // [op, text] pieces that turn `before` into `after`: "=" kept, "-" deleted, "+" inserted.
  function diff(before, after) {
    const a = tokens(before), b = tokens(after);
    let start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start++;
    let endA = a.length, endB = b.length;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
    const pieces = [];
    push(pieces, "=", a.slice(0, start));
    align(a.slice(start, endA), b.slice(start, endB), pieces);
    push(pieces, "=", a.slice(endA));
    return pieces;
  }

  // How many words the pieces insert and delete.
  function counts(pieces) {
    const words = (text) => (text.match(/\S+/g) || []).length;
    let inserted = 0, deleted = 0;
    for (const [op, text] of pieces) {
      if (op === "+") inserted += words(text);
      else if (op === "-") deleted += words(text);
    }
    return { inserted: inserted, deleted: deleted };
  }

  // Show the pieces in `into`: text nodes, <ins> and <del> (textContent only, never HTML).
  function render(pieces, into) {
    into.replaceChildren(...pieces.map(function ([op, text]) {
      if (op === "=") return document.createTextNode(text);
      const mark = document.createElement(op === "+" ? "ins" : "del");
      mark.textContent = text;
      return mark;
    }));
  }

  return { diff: diff, counts: counts, render: render };
})();
