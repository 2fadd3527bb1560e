"""Checks a report's text must pass, which nbval would not catch (it compares an output with
itself); ``report_job`` prints what they find as warnings.
"""

from __future__ import annotations

import html
import re

_HEADER = re.compile(r"<th\b[^>]*>(.*?)</th>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
# "the full build", "small profile", "the fidelity one", "profile “small”".
_BUILD = re.compile(
    r"\b(full|small|fidelity)[ -](build|profile|one|configuration)\b"
    r"|\bprofile\s+[“\"']?(\w+)",
    re.IGNORECASE,
)
# "on Fashion-MNIST", "the Fashion-MNIST report": a statement about that dataset's results.
_FASHION = re.compile(r"\b(?:on|of|for|in) Fashion-MNIST\b|\bFashion-MNIST (?:build|report)\b")
# "Figure @fig-x" in a notebook, "Figure [Figure 3](#fig-x)" once the report is numbered.
_DOUBLED = re.compile(
    r"\b(?:Figure|Table|Section)s?\s+@(?:fig|tab|sec)-|\b(Figure|Table|Section)\s+\[?\1\b",
    re.IGNORECASE,
)
_E_NOTATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?e[+-]?\d+\b")


def bad_headers(page: str) -> list[str]:
    """The table header cells of ``page`` (HTML) without a letter or digit."""
    texts = (html.unescape(_TAG.sub("", cell)).strip() for cell in _HEADER.findall(page))
    return [text for text in texts if not any(c.isalnum() for c in text)]


def build_leaks(text: str, dataset: str, profile: str | None) -> list[str]:
    """The phrases of ``text`` naming another build than (``dataset``, ``profile``)."""
    shown = (profile or "full").lower()
    leaks = []
    for match in _BUILD.finditer(text):
        named = (match.group(1) or match.group(3)).lower()
        if named != shown and (match.group(1) or named in ("full", "small", "fidelity")):
            leaks.append(match.group(0))
    if dataset == "mnist":
        leaks += _FASHION.findall(text)
    return leaks


def e_notation(text: str) -> list[str]:
    """The numbers of ``text`` written in e-notation (``2.5e+04``), not as ×10ⁿ."""
    return _E_NOTATION.findall(text)


def doubled_kinds(text: str) -> list[str]:
    """The references of ``text`` written after their kind: "Figure @fig-x", "Table Table 2"."""
    return [match.group(0) for match in _DOUBLED.finditer(text)]


def doubled_braces(text: str) -> list[str]:
    """The stretches of ``text`` around a "{{" (an f-string's escape outside one)."""
    return [text[max(0, m.start() - 10) : m.end() + 10] for m in re.finditer(r"\{\{", text)]
