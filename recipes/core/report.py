"""A run report as Markdown and as one self-contained HTML page (plots embedded)."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """One step of a procedure: what it found, what was decided, its tables and plots."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[list[dict[str, Any]]] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def html_table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_markdown(title: str, sections: list[Section], root: Path) -> str:
    """Markdown with images linked relative to the report's folder."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += section.text
        parts += [markdown_table(rows) for rows in section.tables if rows]
        parts += [f"![{p.stem}]({os.path.relpath(p, root)})" for p in section.images if p.is_file()]
    return "\n\n".join(parts) + "\n"


def embedded(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
    "th{background:#f3f3f3}img{max-width:100%;margin:.5em 0}h2{border-bottom:1px solid #ddd}"
)


def to_html(title: str, sections: list[Section]) -> str:
    """One HTML file that opens anywhere: every plot is embedded as a data URI."""
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{STYLE}</style><h1>{html.escape(title)}</h1>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(line)}</p>" for line in section.text]
        parts += [html_table(rows) for rows in section.tables if rows]
        parts += [embedded(p) for p in section.images if p.is_file()]
    return "\n".join(parts) + "\n"


def write_report(folder: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """report.md and report.html in `folder`."""
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(to_markdown(title, sections, folder))
    page.write_text(to_html(title, sections))
    return md, page
