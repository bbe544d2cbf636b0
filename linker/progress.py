"""Progress bars that show on a terminal and stay silent when output is piped."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["progress"]

T = TypeVar("T")


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar drawn on stderr only when stderr is a terminal.

    Parameters
    ----------
    iterable : Iterable
        The work items.
    total : int, optional
        Number of items, when ``iterable`` has no ``len``.
    desc : str
        Short label shown before the bar.
    unit : str
        Name of one item.

    Returns
    -------
    Iterator
        The same items, in the same order.
    """
    enabled = sys.stderr.isatty()
    yield from tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        file=sys.stderr,
        leave=False,
    )
