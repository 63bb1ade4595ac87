"""Normalisation (step 1 of ``intent.classifier``): lower-case, payload out, contractions
expanded, inflections folded, typos of the vocabulary repaired; then tokens."""

from __future__ import annotations

import re
from functools import lru_cache

from intent.vocabulary import _CHAT, _DATA_NOUNS, _FUZZY_TARGETS, _NO_FIX, _SCORES, _STOP

# --- normalisation --------------------------------------------------------------------------

_QUOTED = re.compile(r"(^|[\s(:,])([\"'\u2018\u201c])([^\"'\u2018\u2019\u201c\u201d]+)[\"'\u2019\u201d](?=$|[\s.,;:!?)])")
_NAMED = re.compile(r"\b(named|called|titled)\s+\S+")
_CONTRACTIONS = ((re.compile(r"\bcan'?t\b"), "can not"), (re.compile(r"\bwon'?t\b"), "will not"),
                 (re.compile(r"\b(do|does|did|is|are|was|were|have|has|had|should|would|could)n'?t\b"), r"\1 not"),
                 (re.compile(r"\bdont\b"), "do not"), (re.compile(r"n't\b"), " not"),
                 (re.compile(r"\b(what|that|where|how|who)s\b"), r"\1 is"), (re.compile(r"\bim\b"), "i am"),
                 (re.compile(r"\b(what|that|where|who|it|there|here|how)'s\b"), r"\1 is"),
                 (re.compile(r"\blet's\b"), "let us"), (re.compile(r"'m\b"), " am"), (re.compile(r"'re\b"), " are"),
                 (re.compile(r"'ll\b"), " will"), (re.compile(r"'ve\b"), " have"), (re.compile(r"'d\b"), " would"),
                 (re.compile(r"'s\b"), ""))
_SET_UP = re.compile(r"\b(?:set|sets|setting)\s+(?:(?:it|them|this|that|things|everything|anything|something|"
                     r"stuff|me|us)\s+)?up\b|\bset-up\b|\bsetting-up\b")
_MAKE_SEARCHABLE = re.compile(r"\bmak(?:e|es|ing)\s+(?:[a-z0-9']+\s+){0,4}searchable\b")
_RE_VERB = re.compile(r"\bre-(index|ingest|upload|process|configure|build|create)")
_TOKEN = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*|[.,;:!?()|]")
_BOUNDARY = frozenset(".,;:!?()|")

# inflections: present and -ing forms fold to the base; -ed forms are left alone on purpose
_IRREGULAR = {"doing": "do", "making": "make", "getting": "get", "setting": "set", "running": "run"}
_BASE_VERBS = sorted({w for p in _SCORES for w in p.split() if len(w) >= 3 and w not in _STOP} | {"setup"})


def _forms(base: str) -> list[str]:
    stem = base[:-1] if base.endswith("e") and not base.endswith("ee") else base
    plural = base + ("es" if base.endswith(("s", "sh", "ch", "x", "z")) else "s")
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        plural = base[:-1] + "ies"
    return [plural, stem + "ing", base + "ing"]


_FOLD: dict[str, str] = {}
for _b in _BASE_VERBS + list(_DATA_NOUNS) + ["namespace", "source", "sheet"]:
    for _f in _forms(_b):
        if _f not in _STOP:
            _FOLD.setdefault(_f, _b)
_FOLD.update(_IRREGULAR)
_FOLD.update({"docs": "doc", "pdfs": "pdf", "indices": "index", "indexes": "index", "searchs": "search",
              "setups": "setup", "mentioned": "mention", "mentions": "mention", "containing": "containing",
              "showing": "showing", "analyzing": "analyze", "data": "data", "media": "media"})
_KNOWN = frozenset(_FOLD) | frozenset(_BASE_VERBS) | _CHAT | _STOP | frozenset(_DATA_NOUNS)


def _edit1(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance exactly one (substitution, insertion, deletion, swap)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                   and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


# symmetric-delete index: a word within one edit of a target shares a deletion with it (or is one)
_NEIGHBOURS: dict[str, set[str]] = {}
for _t in _FUZZY_TARGETS:
    for _form in (_t, _t + "s"):
        for _key in _deletions(_form) | {_form}:
            _NEIGHBOURS.setdefault(_key, set()).add(_t)
# One edit from a target (or its plural) is at most this long: a longer word cannot be a typo of
# one, and its deletions would cost the square of its length (issue 15.1).
_MAX_TYPO_LEN = max(len(t) for t in _FUZZY_TARGETS) + 2


@lru_cache(maxsize=4096)
def _repair(word: str) -> str:
    """A typo of a vocabulary word, repaired; anything else unchanged."""
    if word in _KNOWN or word in _NO_FIX or len(word) > _MAX_TYPO_LEN or not word.isalpha():
        return word
    if len(word) < 5 and not (len(word) == 3 and not set(word) & set("aeiouy")):  # "lst", "fnd"
        return word
    found = {t for key in _deletions(word) | {word} for t in _NEIGHBOURS.get(key, ())}
    min_len = 5 if len(word) >= 5 else 4
    ok = {t for t in found if any(len(f) >= min_len and _edit1(word, f) for f in (t, t + "s"))}
    if len(word) == 3:
        ok = {t for t in ok if len(t) == 4}
    return ok.pop() if len(ok) == 1 else word


def _tokens(text: str) -> tuple[list[str], bool]:
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = _QUOTED.sub(lambda m: f"{m.group(1)} _quoted_ ", t)
    quoted = "_quoted_" in t
    t = _NAMED.sub(r"\1 _name_", t)
    for pattern, repl in _CONTRACTIONS:
        t = pattern.sub(repl, t)
    t = _RE_VERB.sub(r"re\1", t)
    t = _SET_UP.sub(" setup ", t)
    t = _MAKE_SEARCHABLE.sub(" make searchable ", t)
    t = re.sub(r"\s[-\u2013\u2014]+\s|\s[-\u2013\u2014]+$|--", " | ", t)
    out: list[str] = []
    for raw in _TOKEN.findall(t):
        if raw in _BOUNDARY:
            if out and out[-1] != "|":
                out.append("|")
            continue
        for part in raw.split("-"):
            if part:
                word = _repair(part)
                out.append(_FOLD.get(word, word))
    return out, quoted
