"""Figures and tables with a label and a caption, and the numbering of a whole report.

``figure`` and ``table`` carry their label and caption in the output's metadata
(``OUTPUT_KEY``); text refers to them as ``@fig-label``, ``@tab-label`` or ``@sec-label``
(``## Title {#sec-label}``). ``number_report`` numbers headings, figures and tables and
turns every ``@label`` into a link.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from markdown_it import MarkdownIt
from matplotlib.figure import Figure
from matplotlib.text import Text
from pandas.io.formats.style import Styler

from linmnist.report.tables import styled

OUTPUT_KEY = "linmnist"
KINDS = {"fig": "Figure", "tab": "Table", "sec": "Section"}
_LABEL = re.compile(r"^(fig|tab)-[a-z0-9][a-z0-9-]*$")
_REFERENCE = re.compile(r"(?<![\w@/#])@((?:fig|tab|sec)-[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)")
_ATTRIBUTES = re.compile(r"^(.*?)\s*(?:\{([^{}]*)\})?$", re.DOTALL)
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
_MARKDOWN = MarkdownIt("commonmark")
_CAPTION_NUMBER = '<span class="caption-number">{}</span>'
_FIGCAPTION = re.compile(r"<figcaption>.*?</figcaption>", re.DOTALL)
# Tables of at most this many rows are kept on one page in print; longer ones break between
# rows (a table moved whole to the next page would leave most of a page blank).
SHORT_TABLE_ROWS = 30
# Print size of figures: the PDF's text column is 182 mm (7.17 in) wide.
PRINT_WIDTH_IN = 7.17
# A table of more columns spans the page's width (on paper).
WIDE_COLUMNS = 5
# The smallest text of a figure, in points at its printed size.
MIN_FONT_PT = 8.0


def _check_label(label: str, kind: str) -> str:
    if not isinstance(label, str) or not _LABEL.match(label) or not label.startswith(kind):
        raise ValueError(
            f"label must look like '{kind}-name' (lower-case letters, digits, dashes), "
            f"got {label!r}"
        )
    return label


def _check_caption(caption: str) -> str:
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")
    return caption.strip()


@dataclass(frozen=True)
class Captioned:
    """A figure or table with its label and caption, shown by IPython's display."""

    data: dict[str, str]
    label: str
    caption: str
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)

    def _repr_mimebundle_(self, include=None, exclude=None):
        meta = {"kind": self.kind, "label": self.label, "caption": self.caption, **self.extra}
        return dict(self.data), {OUTPUT_KEY: meta}


def figure_html(png: str, *, label: str, caption: str, number: str, width_in: float) -> str:
    """The HTML of a numbered figure: the image (alt: the caption's text) and its caption."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", caption))
    alt = html.escape(f"{number} {plain}" if number else plain, quote=True)
    return (
        f'<figure class="report-figure" id="{label}">'
        f'<img alt="{alt}" style="width:{width_in:.2f}in" src="data:image/png;base64,{png}">'
        f"{_figcaption(number or 'Figure', caption)}</figure>"
    )


def _figcaption(number: str, caption: str) -> str:
    return f"<figcaption>{_CAPTION_NUMBER.format(number)} {caption}</figcaption>"


def table_html(body: str, *, label: str, caption: str, number: str, short: bool = False) -> str:
    """The HTML of a numbered table, caption above; a ``short`` one stays on one page."""
    kind = "report-table short" if short else "report-table"
    head = _figcaption(number or "Table", caption)
    return f'<figure class="{kind}" id="{label}">{head}{body}</figure>'


def figure(fig: Figure, *, label: str, caption: str) -> Captioned:
    """A matplotlib figure with its label (``fig-...``) and caption, as a PNG."""
    label, caption = _check_label(label, "fig"), _check_caption(caption)
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < MIN_FONT_PT:  # type: ignore[operator]
            text.set_fontsize(MIN_FONT_PT)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight", metadata={"Software": None})
    raw = buffer.getvalue()
    png = base64.b64encode(raw).decode("ascii")
    # The PNG's width in pixels (bytes 16-20 of its header) at the figure's dpi: its size in
    # inches, the size it prints at unless it is wider than the page.
    width_in = min(int.from_bytes(raw[16:20], "big") / fig.dpi, PRINT_WIDTH_IN)
    data = {"image/png": png, "text/plain": f"Figure: {caption}"}
    return Captioned(data, label, caption, "figure", {"width_in": round(width_in, 2)})


def table(frame: pd.DataFrame | Styler, *, label: str, caption: str) -> Captioned:
    """A DataFrame or Styler with its label (``tab-...``) and caption, as HTML."""
    label, caption = _check_label(label, "tab"), _check_caption(caption)
    if isinstance(frame, pd.DataFrame):
        frame = styled(frame)
    if not isinstance(frame, Styler):
        raise ValueError(f"frame must be a DataFrame or a Styler, got {type(frame).__name__}")
    if frame.data.shape[1] > WIDE_COLUMNS:
        frame = frame.set_table_attributes('class="wide"')
    short = len(frame.data) <= SHORT_TABLE_ROWS
    page = table_html(frame.set_uuid(label).to_html(), label=label, caption=html.escape(caption),
                      number="", short=short)  # fmt: skip
    data = {"text/html": page, "text/plain": f"Table: {caption}\n{frame.data.to_string()}"}
    return Captioned(data, label, caption, "table")


# --- numbering a report -----------------------------------------------------------------


def slug(text: str) -> str:
    """A lower-case id of the words of ``text``: ``"Task 2 — baseline"`` -> ``task-2-baseline``."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:60] or "section"


@dataclass
class Numbering:
    """What ``number_report`` found: every label's number, and the contents entries."""

    numbers: dict[str, str] = field(default_factory=dict)
    contents: list[tuple[int, str, str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    uncaptioned: list[str] = field(default_factory=list)


def _inline_html(text: str) -> str:
    """A heading's Markdown text as HTML: escaped, with `code` spans."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def markdown_blocks(source: str) -> tuple[dict[int, tuple[int, str]], set[int]]:
    """The ATX headings (line -> (level, text)) and code lines of Markdown ``source``."""
    tokens = _MARKDOWN.parse(source)
    headings: dict[int, tuple[int, str]] = {}
    code: set[int] = set()
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.markup.startswith("#"):
            headings[token.map[0]] = (int(token.tag[1:]), tokens[i + 1].content)  # type: ignore[index]
        elif token.type in ("fence", "code_block"):
            code.update(range(*token.map))  # type: ignore[misc]
    return headings, code


def demote_headings(markdown: str, levels: int = 1) -> str:
    """Markdown with every ATX heading moved ``levels`` deeper (``#`` -> ``##``), at most 6."""
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    lines = markdown.split("\n")
    for i, (level, _) in markdown_blocks(markdown)[0].items():
        text = lines[i].lstrip()
        lines[i] = "#" * min(6, level + levels) + text[level:]
    return "\n".join(lines)


def _number_headings(source: str, counters: list[int], numbering: Numbering, ids: set) -> str:
    """Headings ``##``-``####`` of one Markdown cell as numbered HTML headings with ids."""
    lines = source.split("\n")
    for i, (level, text) in markdown_blocks(source)[0].items():
        title, attributes = _ATTRIBUTES.match(text).groups()  # type: ignore[union-attr]
        attributes = (attributes or "").split()
        label = next((a[1:] for a in attributes if a.startswith("#sec-")), None)
        if level == 1 or level > 4:
            lines[i] = f"{'#' * level} {title}"
            continue
        depth = level - 2
        number = ""
        if not {".unnumbered", "-"} & set(attributes):
            counters[depth] += 1
            counters[depth + 1 :] = [0] * (len(counters) - depth - 1)
            number = ".".join(str(n) for n in counters[: depth + 1])
        anchor = label or f"sec-{number.replace('.', '-') or 'u'}-{slug(title)}"
        while anchor in ids:
            anchor += "-x"
        ids.add(anchor)
        if label:
            numbering.numbers[label] = number or title
        numbering.contents.append((depth, number, title, anchor))
        shown = f'<span class="section-number">{number}</span> ' if number else ""
        lines[i] = f'\n<h{level} id="{anchor}">{shown}{_inline_html(title)}</h{level}>\n'
    return "\n".join(lines)


def _number_outputs(cell, counts: dict[str, int], numbering: Numbering) -> None:
    """Give each figure and table output of ``cell`` its number (``meta["number"]``)."""
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        meta = output.get("metadata", {}).get(OUTPUT_KEY)
        if not meta and "image/png" in data:
            # A figure shown without ``figure()``: numbered all the same, and reported.
            meta = {"kind": "figure", "label": f"fig-{counts['figure'] + 1}", "caption": ""}
            output.setdefault("metadata", {})[OUTPUT_KEY] = meta
            meta = output["metadata"][OUTPUT_KEY]  # the node stores a copy
            numbering.uncaptioned.append(meta["label"])
        if not meta:
            continue
        counts[meta["kind"]] += 1
        number = counts[meta["kind"]]
        meta["number"] = f"{'Figure' if meta['kind'] == 'figure' else 'Table'} {number}."
        numbering.numbers[meta["label"]] = str(number)


def _caption_outputs(cell, numbering: Numbering) -> None:
    """The numbered caption of each figure and table output of ``cell``, references resolved."""
    for output in cell.get("outputs", []):
        meta = output.get("metadata", {}).get(OUTPUT_KEY)
        if not meta or "number" not in meta:
            continue
        data = output["data"]
        caption = resolve_references(html.escape(meta["caption"]), numbering, markup="html")
        if meta["kind"] == "figure":
            width = meta.get("width_in", PRINT_WIDTH_IN)
            page = figure_html(data["image/png"], label=meta["label"], caption=caption,
                               number=meta["number"], width_in=width)  # fmt: skip
            output["data"] = {"text/html": page, "text/plain": data.get("text/plain", "")}
        else:
            head = _figcaption(meta["number"], caption)
            data["text/html"] = _FIGCAPTION.sub(
                head.replace("\\", "\\\\"), data["text/html"], count=1
            )


def resolve_references(text: str, numbering: Numbering, *, markup: str = "markdown") -> str:
    """Every ``@fig-x`` / ``@tab-x`` / ``@sec-x`` of ``text`` outside code as a link "Figure 4";
    a label not in the report reads "Figure (not in this build)" (``numbering.missing``)."""

    def replace(match: re.Match) -> str:
        label = match.group(1)
        kind = KINDS[label.split("-", 1)[0]]
        if label not in numbering.numbers:
            numbering.missing.append(label)
            return f"{kind} (not in this build)"
        number = numbering.numbers[label]
        shown = f"{kind} {number}" if number[0].isdigit() else number
        return f'<a href="#{label}">{shown}</a>' if markup == "html" else f"[{shown}](#{label})"

    def outside_code_spans(line: str) -> str:
        parts, last = [], 0
        for span in _CODE_SPAN.finditer(line):
            parts += [_REFERENCE.sub(replace, line[last : span.start()]), span.group()]
            last = span.end()
        return "".join(parts) + _REFERENCE.sub(replace, line[last:])

    if markup == "html":
        return _REFERENCE.sub(replace, text)
    code = markdown_blocks(text)[1]
    lines = text.split("\n")
    return "\n".join(
        line if i in code else outside_code_spans(line) for i, line in enumerate(lines)
    )


def number_report(cells: list) -> Numbering:
    """Number the headings, figures and tables of a report's cells; resolve references."""
    numbering, counters, ids = Numbering(), [0, 0, 0], set[str]()
    counts = {"figure": 0, "table": 0}
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = _number_headings(cell.source, counters, numbering, ids)
        elif cell.cell_type == "code":
            _number_outputs(cell, counts, numbering)
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = resolve_references(cell.source, numbering)
            continue
        _caption_outputs(cell, numbering)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = resolve_references(data["text/markdown"], numbering)
    return numbering


def contents_html(numbering: Numbering) -> str:
    """The contents: a nested list of links to the headings, in order."""
    out, depth = ['<nav class="report-contents">', "<ul>"], 0
    for i, (level, number, title, anchor) in enumerate(numbering.contents):
        level = min(level, depth + 1)
        while depth > level:
            out.append("</ul></li>")
            depth -= 1
        shown = f'<span class="section-number">{number}</span> ' if number else ""
        out.append(f'<li><a href="#{anchor}">{shown}{_inline_html(title)}</a>')
        following = numbering.contents[i + 1][0] if i + 1 < len(numbering.contents) else 0
        if following > level:
            out.append("<ul>")
            depth += 1
        else:
            out.append("</li>")
    out += ["</ul></li>"] * depth + ["</ul>", "</nav>"]
    return "\n".join(out)
