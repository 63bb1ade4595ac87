"""How deeply JSON values nest, checked without recursion.

Deeply nested input made recursive code (decoding, validation, filter parsing, encoding for
storage) raise ``RecursionError``: a 500 and a long traceback per small request (issue 15.3).
Everything that accepts nested JSON refuses it past a depth first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_JSON_DEPTH = 64  # request bodies, metadata included
MAX_FILTER_DEPTH = 16  # AND/OR/NOT levels (each is two JSON levels)


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (a scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list | tuple))
    return False
