"""Text as the data plane sees it: the one tokenizer, and the text of a document's fields.

Shared so that the index (``dataplane/retrieval``) and the collection matcher
(``dataplane/service.py``) agree on what a term is; a query that finds a document must also
find its collection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from bm25s.stopwords import STOPWORDS_EN

_TOKEN = re.compile(r"\b\w\w+\b")  # bm25s's default: words of two or more characters
STOPWORDS = frozenset(STOPWORDS_EN)


def stem(word: str) -> str:
    """Harman's S-stemmer: folds plurals ("streams" -> "stream", "queries" -> "query") and
    nothing else, so a search still means what it says. A full stemmer would need a native
    dependency for little gain on short documents."""
    if len(word) > 3 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    return [stem(w) for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS]


def flatten(value: Any) -> Iterator[str]:
    """The words a metadata value contributes: strings and numbers, inside lists and dicts too."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from flatten(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from flatten(v)


def lookup(metadata: dict[str, Any], path: str) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted path into metadata (``"a.b"`` walks nested objects)."""
    current: Any = metadata
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def field_paths(metadata: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every addressable path of a metadata object, nested objects included (``a``, ``a.b``)."""
    for key, value in metadata.items():
        path = prefix + key
        yield path
        if isinstance(value, dict):
            yield from field_paths(value, path + ".")


def is_text(value: Any) -> bool:
    """Whether a value is worth indexing as text (strings, or lists holding strings)."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and any(isinstance(v, str) for v in value)


def document_text(metadata: dict[str, Any], fields: Iterable[str]) -> str:
    parts: list[str] = []
    for path in fields:
        found, value = lookup(metadata, path)
        if found:
            parts.extend(flatten(value))
    return " ".join(parts)
