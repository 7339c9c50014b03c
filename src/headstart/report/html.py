"""A self-contained HTML report: sections of text, tables and inline PNG images.

Images are embedded as ``data:`` URIs, so the one file can be mailed or opened from anywhere;
every text is escaped. No script and no external resource: the page renders the same offline.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Figure:
    png: bytes
    caption: str
    alt: str = ""


@dataclass
class Section:
    """One titled part of the report; ``blocks`` render in order."""

    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)

    def text(self, s: str) -> "Section":
        self.blocks.append(("p", s))
        return self

    def note(self, s: str) -> "Section":
        self.blocks.append(("note", s))
        return self

    def items(self, rows: Sequence[str]) -> "Section":
        self.blocks.append(("ul", list(rows)))
        return self

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> "Section":
        self.blocks.append(("table", list(rows), list(columns) if columns else None))
        return self

    def figure(self, png: bytes | None, caption: str, alt: str = "") -> "Section":
        if png is not None:
            self.blocks.append(("figure", Figure(png, caption, alt or caption)))
        return self

    def code(self, s: str) -> "Section":
        self.blocks.append(("pre", s))
        return self


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}nav{padding:8px 28px;background:#e8eef4;position:sticky;top:0}
nav a{margin-right:14px;color:#1f3b57;text-decoration:none;font-size:14px}
main{padding:8px 28px 40px;max-width:1200px}section{background:#fff;border:1px solid #ddd;
border-radius:6px;padding:6px 18px 14px;margin:16px 0}h2{font-size:18px;color:#1f3b57}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px;max-height:420px}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:6px 10px}
"""


def _cell(v: Any) -> tuple[str, bool]:
    if isinstance(v, bool) or v is None:
        return ("—" if v is None else str(v)), False
    if isinstance(v, float):
        return (f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"), True
    if isinstance(v, int):
        return str(v), True
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)), False
    return str(v), False


def _block(b: Any) -> str:
    kind = b[0]
    if kind == "p":
        return f"<p>{html.escape(b[1])}</p>"
    if kind == "note":
        return f'<p class="note">{html.escape(b[1])}</p>'
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>"
    if kind == "pre":
        return f"<pre>{html.escape(b[1])}</pre>"
    if kind == "figure":
        f: Figure = b[1]
        data = base64.b64encode(f.png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.alt, quote=True)}">'
                f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")
    if kind == "table":
        rows, cols = b[1], b[2]
        if not rows:
            return "<p>(none)</p>"
        cols = cols or list(rows[0])
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = []
        for r in rows:
            cells = []
            for c in cols:
                text, num = _cell(r.get(c))
                cells.append(f'<td class="num">{html.escape(text)}</td>' if num else f"<td>{html.escape(text)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    raise ValueError(f"unknown block {kind!r}")


def render(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page as one string."""
    nav = "".join(f'<a href="#{html.escape(s.id, quote=True)}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{html.escape(s.id, quote=True)}"><h2>{html.escape(s.title)}</h2>{"".join(_block(b) for b in s.blocks)}</section>'
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main></body></html>\n"
    )
