"""Pieces of a report as HTML fragments for a notebook (`manager.display_info()` and
friends): the page's styles scoped to the fragment, and files embedded as data URIs, since a
notebook cannot load files by their path on disk."""

from __future__ import annotations

import base64
import functools
import os
import re
import tempfile
from typing import Any

from curifactory_cli.report.page import CSS
from curifactory_cli.reporting import PATH_TOKEN, CachedReportable
from curifactory_cli.store.file_checks import bytes_match

SCOPE = "curi-report"
_MIME = {
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
}


@functools.cache
def scoped_css() -> str:
    """The report's CSS with every rule limited to `.curi-report` (a notebook's own page
    keeps its styles)."""
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", CSS):
        scoped = []
        for selector in selectors.split(","):
            selector = selector.strip()
            if selector in (":root", "body"):
                scoped.append(f".{SCOPE}")
            else:
                scoped.append(f".{SCOPE} {selector}")
        rules.append(f"{', '.join(scoped)} {{{body}}}")
    return "\n".join(rules)


def fragment(body: str) -> str:
    return f'<div class="{SCOPE}"><style>{scoped_css()}</style>{body}</div>'


def _data_uri(name: str, data: bytes) -> str:
    mime = _MIME.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def reportable_body(reportable: Any) -> str:
    """A reportable's HTML with the files it refers to embedded."""
    if isinstance(reportable, CachedReportable):
        html = reportable.stored_html
        for name, info in reportable.files.items():
            with open(os.path.join(reportable.path, name), "rb") as infile:
                data = infile.read()
            if bytes_match(data, info):
                html = html.replace(f"{PATH_TOKEN}/{name}", _data_uri(name, data))
        return html.replace(PATH_TOKEN, reportable.path)
    with tempfile.TemporaryDirectory(prefix="curi-reportable-") as folder:
        kept = reportable.path
        reportable.path = folder
        try:
            reportable.render()
            html = reportable.html()
        finally:
            reportable.path = kept
        if isinstance(html, (list, tuple)):
            html = "\n".join(str(line) for line in html)
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as infile:
                html = html.replace(f"{folder}/{name}", _data_uri(name, infile.read()))
    return str(html)
