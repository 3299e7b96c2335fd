"""Reportables: pieces of a run's report that stages add with `record.report(...)`, as in
Curifactory (`curifactory.reporting`): tables, JSON, figures, line plots, images, raw HTML.

A reportable renders its files (`render()`, into `self.path`) and its HTML (`html()`, which
may refer to those files through `self.path`). Importing this module imports neither
matplotlib nor pandas: the reportables that need them import them when they render.

A custom reportable written for Curifactory works with its imports changed: subclass
`Reportable`, implement `html()` (a string or a list of lines) and, when it writes files,
`render()`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from curifactory_cli.wording import plural

__all__ = [
    "CachedReportable",
    "DFReporter",
    "FigureReporter",
    "HTMLReporter",
    "ImageReporter",
    "JsonReporter",
    "LatexTableReporter",
    "LinePlotReporter",
    "MetricReporter",
    "Reportable",
]


def _escape(text: str) -> str:
    import html  # only when a reportable renders: importing it costs every run 2 ms

    return html.escape(text)


MAX_ROWS = 50  # of a DataFrame shown in a report: head and tail, with the shape


class Reportable:
    """The base of every reportable.

    Args:
        name: the title's suffix; None numbers it (`record.report` sets `qualified_name`).
        group: reportables with the same group are shown together in the report.
    """

    def __init__(self, name: str | None = None, group: str | None = None) -> None:
        self.rendered: bool = False
        self.path: str = ""  # a folder render() may write into, and html() may refer to
        self.name = name
        self.qualified_name = name  # "<set>_<stage>_<name>", set by record.report()
        self.group = group
        self.record: Any = None
        self.stage: str = ""

    def html(self) -> str | list[str]:
        """The reportable's HTML (a string, or a list of lines)."""
        raise NotImplementedError(f"{type(self).__name__} must implement html()")

    def render(self) -> None:
        """Write any files the HTML refers to, into `self.path` (called once, before html())."""


def _file_name(reportable: Reportable, extension: str) -> str:
    # Names come from users: keep them usable as one file name.
    safe = "".join(
        c if c.isalnum() or c in "._-()" else "_" for c in str(reportable.qualified_name)
    )
    return f"{safe or 'reportable'}.{extension}"


class HTMLReporter(Reportable):
    """Raw HTML, as given."""

    def __init__(
        self, html_string: str | list[str], name: str | None = None, group: str | None = None
    ) -> None:
        self.html_string = html_string
        super().__init__(name=name, group=group)

    def html(self) -> str | list[str]:
        return self.html_string


class JsonReporter(Reportable):
    """Anything JSON-able, indented, in a `<pre>` block."""

    def __init__(self, dictionary: Any, name: str | None = None, group: str | None = None) -> None:
        self.data = dictionary
        super().__init__(name=name, group=group)

    def html(self) -> list[str]:
        text = json.dumps(self.data, indent=4, default=str)
        return ["<pre>", _escape(text), "</pre>"]


class MetricReporter(Reportable):
    """A stage call's metrics as a small table. `MetricReporter()` shows the metrics the call
    records (`record.metric`), also those recorded after it is reported;
    `MetricReporter({"acc": 0.9})` records the given ones (as `record.metrics` does) and
    shows them."""

    def __init__(
        self,
        metrics: dict[str, Any] | None = None,
        name: str | None = None,
        group: str | None = None,
    ) -> None:
        self.given = None if metrics is None else dict(metrics)
        self.metrics: dict[str, Any] = dict(self.given or {})
        super().__init__(name=name, group=group)

    def _curi_bind_metrics(self, call_metrics: dict[str, Any]) -> None:
        """Called by record.report(): the running call's metrics dict, filled as it runs."""
        if self.given is None:
            self.metrics = call_metrics
            return
        self.record.metrics(self.given)
        self.metrics = {k: call_metrics[k] for k in self.given}

    def html(self) -> list[str]:
        from curifactory_cli.metrics import format_metric

        rows = [
            f"<tr><th>{_escape(str(k))}</th><td>{_escape(format_metric(v))}</td></tr>"
            for k, v in self.metrics.items()
        ]
        if not rows:
            return ["<p><em>no metrics recorded</em></p>"]
        return ['<table class="metrics">', *rows, "</table>"]


class DFReporter(Reportable):
    """A pandas DataFrame as an HTML table (floats rounded to `float_prec` digits); a big one
    is shown by its head and tail, with its shape."""

    def __init__(
        self, df: Any, name: str | None = None, group: str | None = None, float_prec: int = 4
    ) -> None:
        self.df = df
        self.float_prec = float_prec
        super().__init__(name=name, group=group)

    def html(self) -> list[str]:
        df = self.df
        rows = len(df)
        shown = df if rows <= MAX_ROWS else None
        shape = f"{plural(rows, 'row')} &times; {plural(len(df.columns), 'column')}"
        lines = [f"<p class='shape'>{shape}</p>"]
        lines.append("<table class='df'><tr><th></th>")
        lines += [f"<th>{_escape(str(c))}</th>" for c in df.columns]
        lines.append("</tr>")
        parts = [shown] if shown is not None else [df.head(MAX_ROWS // 2), None, df.tail(5)]
        for part in parts:
            if part is None:
                lines.append(f"<tr><td colspan='{len(df.columns) + 1}'>&hellip;</td></tr>")
                continue
            for index, row in part.iterrows():
                lines.append(f"<tr><th>{_escape(str(index))}</th>")
                for item in row:
                    text = f"{item:.{self.float_prec}f}" if isinstance(item, float) else str(item)
                    lines.append(f"<td>{_escape(text)}</td>")
                lines.append("</tr>")
        lines.append("</table>")
        return lines


class LatexTableReporter(Reportable):
    """A DataFrame as LaTeX (pandas' `Styler.to_latex(**kwargs)`), to copy into a paper."""

    def __init__(
        self, df: Any, name: str | None = None, group: str | None = None, **kwargs: Any
    ) -> None:
        self.df = df
        self.kwargs = kwargs
        super().__init__(name=name, group=group)

    def html(self) -> list[str]:
        return ["<pre>", _escape(self.df.style.to_latex(**self.kwargs)), "</pre>"]


class FigureReporter(Reportable):
    """A matplotlib figure, saved as SVG (or `format="png"`, ...; every keyword goes to
    `savefig`)."""

    def __init__(
        self, fig: Any, name: str | None = None, group: str | None = None, **kwargs: Any
    ) -> None:
        self.fig = fig
        self.kwargs = kwargs
        super().__init__(name=name, group=group)

    def render(self) -> None:
        self.kwargs.setdefault("format", "svg")
        self.fig.savefig(os.path.join(self.path, self._file()), **self.kwargs)

    def _file(self) -> str:
        return _file_name(self, self.kwargs.get("format", "svg"))

    def html(self) -> str:
        return f"<img src='{self.path}/{self._file()}'>"


def _pyplot(who: str) -> Any:
    """matplotlib's pyplot on a file-only backend, or a clear error when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            f"{who} draws with matplotlib, which is not installed: "
            "pip install 'curifactory-cli[report]'"
        ) from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


class LinePlotReporter(Reportable):
    """Line plots of `y` (a list, or a dict of lists: one line each, keys in the legend),
    against `x` when given (the same shape), drawn with matplotlib."""

    def __init__(
        self,
        y: Any,
        x: Any = None,
        name: str | None = None,
        group: str | None = None,
        plot_kwargs: dict[str, Any] | None = None,
        savefig_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.y = y
        self.x = x
        self.plot_kwargs = dict(plot_kwargs or {})
        self.savefig_kwargs = dict(savefig_kwargs or {})
        super().__init__(name=name, group=group)

    def render(self) -> None:
        plt = _pyplot(type(self).__name__)
        fig = plt.figure(facecolor="white")
        try:
            series = self.y if isinstance(self.y, dict) else {None: self.y}
            for label, values in series.items():
                xs = self.x[label] if isinstance(self.x, dict) else self.x
                args = (values,) if xs is None else (xs, values)
                plt.plot(*args, label=label, **self.plot_kwargs)
            if isinstance(self.y, dict):
                plt.legend()
            plt.grid(True)
            self.savefig_kwargs.setdefault("format", "svg")
            fig.savefig(os.path.join(self.path, self._file()), **self.savefig_kwargs)
        finally:
            plt.close(fig)

    def _file(self) -> str:
        return _file_name(self, self.savefig_kwargs.get("format", "svg"))

    def html(self) -> str:
        return f"<img src='{self.path}/{self._file()}'>"


class ImageReporter(Reportable):
    """An image file. Its bytes are read when it is reported, so the report still shows it
    after the original is changed or deleted."""

    def __init__(self, image_path: str, name: str | None = None, group: str | None = None) -> None:
        self.image_path = str(image_path)
        with open(self.image_path, "rb") as infile:
            self.data = infile.read()
        super().__init__(name=name, group=group)

    def _file(self) -> str:
        extension = os.path.splitext(self.image_path)[1].lstrip(".") or "png"
        return _file_name(self, extension)

    def render(self) -> None:
        target = os.path.join(self.path, self._file())
        with open(target, "wb") as outfile:
            outfile.write(self.data)

    def html(self) -> str:
        return f"<img src='{self.path}/{self._file()}'>"


# ------------------------------------------------------------------ kept with the cache entry
REPORTABLES_DIR = "_reportables"
INDEX = f"{REPORTABLES_DIR}/index.json"
PATH_TOKEN = "{curi:reportable_dir}"  # where html() referred to its folder


class CachedReportable(Reportable):
    """A reportable as its stage rendered it, read back from the stage's cache entry: its
    HTML and the files it refers to (in `path`). A cached stage shows the same reportables
    as when it ran, without importing anything of the original's."""

    def __init__(
        self, info: dict[str, Any], folder: str, files: dict[str, dict[str, Any]] | None = None
    ) -> None:
        super().__init__(name=info.get("name"), group=info.get("group"))
        # file name -> its checksum info from the entry's metadata: what a report may copy
        self.files = dict(files or {})
        self.qualified_name = info.get("qualified_name")
        self.stage = str(info.get("stage") or "")
        self.kind = str(info.get("type") or "")
        self.stored_html = str(info.get("html") or "")
        self.path = folder
        self.rendered = True

    def html(self) -> str:
        return self.stored_html.replace(PATH_TOKEN, self.path)


def save_reportables(draft: str, reportables: list[Reportable]) -> None:
    """Render each reportable into the draft folder of its stage's entry, with its HTML,
    so the entry (checksummed, and signed with CURI_CACHE_KEY) carries them."""
    if not reportables:
        return
    index = []
    for i, reportable in enumerate(reportables):
        folder = os.path.join(draft, REPORTABLES_DIR, str(i))
        os.makedirs(folder, exist_ok=True)
        reportable.path = folder
        reportable.render()
        reportable.rendered = True
        reportable.path = PATH_TOKEN
        try:
            body = reportable.html()
        finally:
            reportable.path = folder
        if isinstance(body, (list, tuple)):
            body = "\n".join(str(line) for line in body)
        cls = type(reportable)
        index.append(
            {
                "name": reportable.name,
                "qualified_name": reportable.qualified_name,
                "group": reportable.group,
                "stage": reportable.stage,
                "type": f"{cls.__module__}.{cls.__qualname__}",
                "html": str(body),
                "dir": f"{REPORTABLES_DIR}/{i}",
            }
        )
    with open(os.path.join(draft, INDEX), "w", encoding="utf-8") as outfile:
        json.dump(index, outfile)


def load_reportables(
    entry_dir: str, data: bytes, extra_files: list[dict[str, Any]] | None = None
) -> list[CachedReportable]:
    """The reportables an entry carries, from the bytes of its (verified) index; each knows
    its files and their checksums from `extra_files` (the entry's metadata)."""
    out = []
    for info in json.loads(data):
        rel = str(info.get("dir") or "")
        if not rel.startswith(REPORTABLES_DIR + "/") or ".." in rel.split("/"):
            continue  # metadata is data: never a path outside the entry
        prefix = rel + "/"
        files = {
            str(f["path"])[len(prefix) :]: f
            for f in extra_files or ()
            if isinstance(f, dict)
            and str(f.get("path", "")).startswith(prefix)
            and "/" not in str(f["path"])[len(prefix) :]
        }
        out.append(CachedReportable(info, os.path.join(entry_dir, *rel.split("/")), files))
    return out
