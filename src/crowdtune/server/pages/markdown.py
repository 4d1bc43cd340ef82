"""Item text as HTML, safely: :func:`safe_markdown` escapes everything, then turns a tiny
subset of Markdown into tags. Characters UTF-8 cannot encode (a lone surrogate, in text stored
before the input checks existed) become U+FFFD, so a page always renders."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

from crowdtune.validation import encodable_text

_FENCE = re.compile(r"^```[^\n`]*\n(.*?)(?:\n```[ \t]*$|\Z)", re.S | re.M)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")


def _inline(text: str) -> str:
    """Inline code and bold on text that is already escaped."""
    parts = re.split(r"(`[^`\n]+`)", text)
    out = []
    for part in parts:
        if len(part) > 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{part[1:-1]}</code>")
        else:
            out.append(re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<strong>\1</strong>", part))
    return "".join(out)


def _blocks(text: str) -> list[str]:
    html = []
    for block in re.split(r"\n[ \t]*\n", text.strip("\n")):
        lines = block.split("\n")
        if not block.strip():
            continue
        if all(_LIST_ITEM.match(line) for line in lines):
            tag = "ol" if re.match(r"^\s*\d", lines[0]) else "ul"
            items = "".join(f"<li>{_inline(_LIST_ITEM.sub('', line))}</li>" for line in lines)
            html.append(f"<{tag}>{items}</{tag}>")
        else:
            html.append("<p>" + "<br>\n".join(_inline(line) for line in lines) + "</p>")
    return html


def safe_markdown(text: str) -> Markup:
    """A tiny, safe subset of Markdown: everything is HTML-escaped first, then fenced code
    blocks, paragraphs, line breaks, lists, ``inline code`` and **bold** become tags.

    >>> str(safe_markdown("**hi** <script>alert(1)</script>"))
    '<p><strong>hi</strong> &lt;script&gt;alert(1)&lt;/script&gt;</p>'
    """
    escaped = str(escape(encodable_text(text).replace("\r\n", "\n")))
    html: list[str] = []
    position = 0
    for fence in _FENCE.finditer(escaped):
        html.extend(_blocks(escaped[position : fence.start()]))
        html.append(f"<pre><code>{fence.group(1)}</code></pre>")
        position = fence.end()
    html.extend(_blocks(escaped[position:]))
    return Markup("\n".join(html))  # noqa: S704 (built only from escaped text)
