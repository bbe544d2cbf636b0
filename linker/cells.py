"""Text that leaves linker for a spreadsheet or a terminal, made inert.

Account ids, billing ids and reasons come from the input, so they can hold anything a
hostile sign-up form accepts. Two places would act on them:

* **A spreadsheet** opening a CSV runs a cell that starts with ``=``, ``+``, ``-`` or ``@``
  (and, in some, tab or carriage return) as a formula: ``=cmd|' /C calc'!A0``.
  :func:`neutralise_cell` applies the OWASP rule (prefix such a cell with ``'``) to every
  text cell of every CSV linker writes for people or for billing. It also prefixes a cell
  that already starts with ``'``, so that the rule is reversible: a reader that drops
  exactly one leading ``'`` from each text cell that starts with one gets the value back.
  Numeric columns (``score``, ``cluster_size``) are never touched: they hold numbers only.
* **A terminal** acts on escape sequences (colours, cursor moves, window titles, and on some
  terminals worse). :func:`terminal_text` removes them and every other control character
  from text printed for a person.

docs/pipeline.md ("Cells and terminals") states both rules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import pandas as pd

__all__ = [
    "FORMULA_LEADS",
    "neutralise_cell",
    "neutralise_columns",
    "terminal_text",
]

logger = logging.getLogger(__name__)

FORMULA_LEADS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP)."""

_ESCAPED_LEADS = (*FORMULA_LEADS, "'")

# ANSI escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ST), the other
# two-byte escapes, and their 8-bit C1 forms.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[@-Z\\-_]"
)
# Control characters (C0 but tab and line feed, DEL, C1) and the bidirectional overrides
# and isolates that can make printed text read differently from what it holds.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


_PLAIN_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def neutralise_cell(value: str) -> str:
    """The OWASP rule for one text cell: prefix ``'`` when it starts with ``=``, ``+``,
    ``-``, ``@``, tab or carriage return (or with ``'``, to keep the rule reversible). A
    plain decimal number (``-5``, ``+1.5e3``) is left as it is: a spreadsheet reads it as
    a number, never as a formula.

    Examples
    --------
    >>> neutralise_cell("=cmd|' /C calc'!A0")
    "'=cmd|' /C calc'!A0"
    >>> neutralise_cell("acct-1"), neutralise_cell("'quoted"), neutralise_cell("-5")
    ('acct-1', "''quoted", '-5')
    >>> neutralise_cell("-2+3+cmd|' /C calc'!A0")
    "'-2+3+cmd|' /C calc'!A0"
    """
    if not value.startswith(_ESCAPED_LEADS) or _PLAIN_NUMBER.match(value):
        return value
    return "'" + value


def neutralise_columns(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A copy of ``frame`` whose text columns (``columns``, default every column of string
    or object dtype) have :func:`neutralise_cell` applied; missing values stay missing."""
    out = frame.copy()
    chosen = (
        list(columns)
        if columns is not None
        else [
            c
            for c in frame.columns
            if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object
        ]
    )
    for column in chosen:
        values = out[column]
        cleaned = values.astype(object).map(
            lambda v: neutralise_cell(v) if isinstance(v, str) else v
        )
        out[column] = cleaned if values.dtype == object else cleaned.astype(values.dtype)
    return out


def terminal_text(text: str, *, one_line: bool = False) -> str:
    """``text`` without escape sequences and control characters, for a terminal.

    Tabs and line feeds are kept unless ``one_line``, which removes them too (a table cell,
    an error message echoing a value).

    Examples
    --------
    >>> terminal_text("acct\\x1b[2J\\x1b]0;owned\\x07-1\\r")
    'acct-1'
    >>> terminal_text("a\\nb", one_line=True)
    'ab'
    """
    cleaned = _ANSI.sub("", text)
    return (_CONTROL_ONE_LINE if one_line else _CONTROL).sub("", cleaned)
