"""The report's prose: each discussion is a Jinja2 template filled from its facts.

The English of the report lives in ``linmnist/report/templates/<name>.md.j2``, its numbers
in the dataclasses of ``linmnist.report.facts``; ``render(name, facts)`` fills one with the
other and returns Markdown. Every condition that changes a sentence is in the template;
the template formats numbers with the filters below and never computes one.

Templates are written one clause per line, for reading: ``render`` joins the lines of a
paragraph with single spaces (Markdown does the same) and keeps blank lines between
paragraphs and a line of its own for each list item ("- ..."). A ``{%-`` tag glues what
follows to the end of the previous line.

Filters (a dash for a missing number): ``pct`` (fraction -> "85.34 %"), ``points``
(fraction -> percentage points, ``signed=true`` for "+3.33"), ``mean_sd``
(``mean|mean_sd(sd, percent=true)``), ``lr`` (``:g``), ``fixed(digits)``, ``sig(digits)``
(significant digits), ``count`` (thousands separator), ``span(high)`` ("3-5", or "3"
when equal) and ``literal`` (text from outside the project, e.g. a profile name, shown
literally: ``markdown_literal``).
Global: ``and_sep(loop)``, the separator after an item of an English list
("a, b and c").
"""

from __future__ import annotations

import math
import re
from functools import cache

import jinja2

from linmnist.experiments.paths import TEMPLATES as TEMPLATES_PATH
from linmnist.report import facts as f
from linmnist.report.tables import DASH, mean_sd, pct, span

# Template name -> the facts it renders.
TEMPLATES = {
    "title": f.ScopeFacts,
    "scope": f.ScopeFacts,
    "introduction": f.ScopeFacts,
    "data": f.DataFacts,
    "batch_size": f.BatchSizeFacts,
    "cost": f.CostFacts,
    "subset": f.SubsetFacts,
    "stability": f.StabilityFacts,
    "sweep_cost": f.SweepCostFacts,
    # The scaling-law section (linmnist.report.scaling.render): its parts and Task 4's summary.
    "scaling_law": f.ScalingFacts,
    "scaling_floor": f.ScalingFacts,
    "scaling_cost": f.ScalingFacts,
    "scaling_task4": f.ScalingFacts,
}


def _missing(value) -> bool:
    return value is None or not math.isfinite(value)


def lr_text(value: float | None) -> str:
    """A learning rate as the report writes it: ``0.01``, ``0.0316``, ``1e-05``."""
    return DASH if _missing(value) else f"{value:g}"


def fixed(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals."""
    return DASH if _missing(value) else f"{value:.{digits}f}"


def sig(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits."""
    return DASH if _missing(value) else f"{value:.{digits}g}"


def count(value: int | None) -> str:
    """An integer with a thousands separator: ``60,000``."""
    return DASH if value is None else f"{int(value):,}"


def points(value: float | None, signed: bool = False) -> str:
    """A fraction as percentage points with two decimals (``+3.33`` if ``signed``)."""
    if _missing(value):
        return DASH
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def and_sep(loop) -> str:
    """The separator after the current item of a Jinja loop in an English list."""
    if loop.last:
        return ""
    return " and " if loop.revindex == 2 else ", "


# Markdown's backslash-escapable punctuation, and HTML's special characters as entities.
_MARKDOWN_PUNCTUATION = set("\\`*_{}[]()#+-.!|~$:")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}


def markdown_literal(text: object) -> str:
    """``text`` as Markdown that renders it literally, as plain text: HTML's special characters
    become entities, Markdown's punctuation (and ``$``, a MathJax delimiter) is
    backslash-escaped, and control characters (a newline) are shown as escapes (``\\n``).
    For every string that does not come from the project's own text (paths, profile and
    file names, versions)."""
    out = []
    for char in str(text):
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        elif not char.isprintable() and char != " ":
            out.append("\\" + char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def _mean_sd(mean: float | None, sd: float | None, percent: bool = False) -> str:
    return mean_sd(mean, sd, percent=percent)


@cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report's templates (undefined names are errors)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_PATH),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters |= {
        "pct": pct,
        "points": points,
        "mean_sd": _mean_sd,
        "lr": lr_text,
        "fixed": fixed,
        "sig": sig,
        "count": count,
        "span": span_filter,
        "literal": markdown_literal,
    }
    env.globals["and_sep"] = and_sep
    return env


def span_filter(low: int, high: int) -> str:
    """``low|span(high)``: "3-5", or "3" when both are equal."""
    return span([low, high])


_LIST_ITEM = re.compile(r"^- ")


def reflow(text: str) -> str:
    """Markdown from a rendered template: a paragraph's lines joined with single spaces,
    list items on lines of their own, one blank line between paragraphs."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines: list[str] = []
        for line in block.splitlines():
            line = line.strip()
            if not line:
                continue
            if lines and not _LIST_ITEM.match(line):
                lines[-1] += " " + line
            else:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def render(name: str, facts) -> str:
    """The discussion ``name`` (a key of ``TEMPLATES``) filled from ``facts``, as Markdown.

    Raises
    ------
    ValueError
        For an unknown template, or facts of another type than the template's.
    """
    if name not in TEMPLATES:
        raise ValueError(f"name must be one of {', '.join(TEMPLATES)}, got {name!r}")
    expected = TEMPLATES[name]
    if not isinstance(facts, expected):
        raise ValueError(
            f"the {name!r} template renders {expected.__name__}, got {type(facts).__name__}"
        )
    template = environment().get_template(f"{name}.md.j2")
    return reflow(template.render(facts=facts))


def title(facts: f.ScopeFacts) -> str:
    """The report's title (plain text), naming the dataset."""
    return render("title", facts)


def scope(facts: f.ScopeFacts) -> str:
    """Which dataset the report is on and whether the study's figures appear."""
    return render("scope", facts)


def data(facts: f.DataFacts) -> str:
    """The Task 1 introduction of the dataset."""
    return render("data", facts)


def batch_size(facts: f.BatchSizeFacts) -> str:
    """The Task 4 discussion of the batch size."""
    return render("batch_size", facts)


def cost(facts: f.CostFacts) -> str:
    """The wall time of the grid's runs against the study's."""
    return render("cost", facts)


def subset(facts: f.SubsetFacts) -> str:
    """The Task 5 discussion of the training-set size."""
    return render("subset", facts)


def stability(facts: f.StabilityFacts) -> str:
    """The stability section's discussion."""
    return render("stability", facts)


def sweep_cost(facts: f.SweepCostFacts) -> str:
    """The sweep's measured wall time, in one sentence."""
    return render("sweep_cost", facts)
