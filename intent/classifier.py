"""The intent classifier: keyword analysis, pure and deterministic.

One classifier, two vocabularies: ``IntentClassification`` (execution / setup / ambiguous) for
``POST /intent/detect``, and the SSE ``intent`` event's (``retriever_search`` / ``data_browse``
/ ``collection_management`` / ``pipeline_setup`` / ``conversation``, with a category).

How a request is read, in order:

1. Normalise: lower-case; quoted strings and the name after "named" / "called" are payload,
   not instructions; contractions expand ("don't" -> "do not"); "set it up" -> "setup";
   inflections fold ("searching" -> "search", "collections" -> "collection"; past participles do
   *not* fold — "which collections were created" describes state, it does not ask to create);
   a few typos of the vocabulary are repaired ("sarch", "colections", "lst").
2. Negation: "do not / not / no / never / without" cancels the keywords of the next few words of
   the same clause ("don't search, just list the collections").
3. Scope: what follows a search verb, a topic preposition ("about", "regarding", "from") or a
   descriptive clause ("clips *where* ...", "slides *that* ...") is the query's subject, not an
   instruction: "find documents about indexing strategies" is a search, not a setup.
4. Score: verbs count 2 in verb position and 1 as a noun ("image search"); question words and
   setup nouns count less; the first instruction gets a small bonus (English puts the main verb
   first). Alternatives joined by "or" ("search or set up?") stay ambiguous.
5. The event intent follows from the class and what the instruction is about: collections /
   retrievers / the namespace (browse, manage) versus content (search) versus ingestion (setup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from intent.normalise import _FOLD, _tokens
from intent.vocabulary import (
    _CHAT,
    _DATA_NOUNS,
    _DESCRIPTIVE,
    _DETERMINERS,
    _EXEC_CLASSES,
    _MAX_PHRASE,
    _NEGATION_STOP,
    _NEGATORS,
    _NOUN_OPENERS,
    _PIPELINE_WORDS,
    _SCORES,
    _SETUP_CLASSES,
    _STOP,
    _STRONG_SEARCH,
    _STRUCTURE,
    _TOPIC_OPENERS,
    _VAGUE,
    _VERB_LEAD,
    _YES_NO,
)


@dataclass(frozen=True, slots=True)
class Classification:
    intent: str  # execution | setup | ambiguous
    confidence: float
    reasoning: str
    recommended_action: str
    clarification_needed: bool
    keywords: dict[str, list[str]]
    # the SSE event's vocabulary
    event_intent: str
    event_category: str


# --- analysis -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Hit:
    phrase: str
    cls: str  # exec | browse | question | setup | manage | setup_noun | descriptive | noun (no weight)
    weight: float
    pos: int


def _analyse(tokens: list[str]) -> tuple[list[_Hit], list[str], set[int]]:
    """Keyword hits with their positions, the negated phrases, and the positions that belong to a
    subject (what to search for) rather than to an instruction."""
    negated_at: set[int] = set()
    for i, tok in enumerate(tokens):
        if tok in _NEGATORS:
            for j in range(i + 1, min(len(tokens), i + 5)):
                if tokens[j] in _NEGATION_STOP:
                    break
                negated_at.add(j)
    hits: list[_Hit] = []
    negated: list[str] = []
    topic: set[int] = set()
    in_topic = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "|" or (tok == "then" and i > 0) or (tok == "or" and i + 1 < len(tokens) and _SCORES.get(
                tokens[i + 1], ("", 0))[0] in ("setup", "manage", "exec", "browse")):
            in_topic = False  # a new clause, or an alternative action ("search or set up?")
            i += 1
            continue
        phrase, size = None, 1
        for n in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
            cand = " ".join(tokens[i:i + n])
            if cand in _SCORES:
                phrase, size = cand, n
                break
        prev = next((tokens[j] for j in range(i - 1, -1, -1) if tokens[j] not in ("just", "please", "pls",
                                                                                   "also", "quickly", "kindly")),
                    "|")
        if in_topic:
            topic.update(range(i, i + size))
        if phrase is not None and not in_topic:
            cls, weight = _SCORES[phrase]
            if i in negated_at:
                negated.append(phrase)
            else:
                verb_like = cls in ("exec", "setup", "manage")
                if verb_like and prev in _DETERMINERS:
                    weight, cls = 0, "noun"  # "my uploads", "an index": a thing, not an action
                elif verb_like and prev not in _VERB_LEAD and prev not in _NEGATORS:
                    weight /= 2  # a compound noun: "image search", "video upload"
                hits.append(_Hit(phrase, cls, weight, i))
                if cls == "exec" and phrase in _STRONG_SEARCH and weight >= 2:
                    in_topic = True  # the rest of the clause is what to search for
            i += size
            continue
        if (not in_topic and tok in _YES_NO and prev == "|" and i + 1 < len(tokens)
                and tokens[i + 1] not in ("you", "u", "this", "not") and i not in negated_at):
            hits.append(_Hit(tok, "question", 1.0, i))  # "is my data indexed?"
        if not in_topic and (tok in _TOPIC_OPENERS or (tok in _DESCRIPTIVE | _NOUN_OPENERS and i > 0)):
            head = next((tokens[j] for j in range(i - 1, -1, -1) if tokens[j] != "|"), None)
            content_head = head is not None and head not in _STOP and head not in _VAGUE \
                and head not in _CHAT and head != "_name_" and head not in _SCORES
            if tok in _DESCRIPTIVE and content_head and i not in negated_at:
                hits.append(_Hit(tok, "descriptive", 1.0, i))
            if tok in _TOPIC_OPENERS or content_head:
                in_topic = True
        i += 1
    return hits, negated, topic


def _content_words(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in _STOP and t not in _CHAT and t not in _VAGUE and t != "|"
            and t not in _SCORES and t not in ("_quoted_", "_name_") and not t.isdigit()]


def classify(text: str) -> Classification:
    tokens, quoted = _tokens(text)
    hits, negated, topic = _analyse(tokens)
    joined = " " + " ".join(tokens) + " "
    content = _content_words(tokens)
    nouns = [n for n in _DATA_NOUNS if f" {n} " in joined]
    raw = re.findall(r"[a-z0-9]+", text.lower())

    # interrogatives about nothing in particular are conversation ("what can you do?")
    subject = [t for t in content if t not in _DATA_NOUNS] + [h.phrase for h in hits if h.cls == "noun"]
    if not subject and not nouns and not quoted:
        hits = [h for h in hits if h.cls != "question"]

    setup_score = sum(h.weight for h in hits if h.cls in _SETUP_CLASSES)
    exec_score = sum(h.weight for h in hits if h.cls in _EXEC_CLASSES)
    strong = [h for h in hits if h.weight >= 1 and h.cls != "setup_noun"]
    if strong:  # the main verb tends to come first
        if strong[0].cls in _SETUP_CLASSES:
            setup_score += 0.5
        else:
            exec_score += 0.5
    # "search or set up?": explicit alternatives are a question back to the user
    s_pos = [h.pos for h in strong if h.cls in _SETUP_CLASSES]
    e_pos = [h.pos for h in strong if h.cls in ("exec", "browse")]
    alternatives = bool(s_pos and e_pos) and any(
        tokens[k] == "or" for k in range(min(s_pos[0], e_pos[0]) + 1, max(s_pos[0], e_pos[0])))

    setup_kw = [h.phrase for h in hits if h.cls in _SETUP_CLASSES]
    exec_kw = [h.phrase for h in hits if h.cls in ("exec", "browse", "question")]
    kw = {"setup_keywords": setup_kw, "execution_keywords": exec_kw,
          "neutral_keywords": [next((w for w in raw if _FOLD.get(w, w) == n), n) for n in nouns]}

    margin = abs(setup_score - exec_score)
    if alternatives or (setup_score == exec_score):
        intent, action = "ambiguous", "ask_clarification"
        confidence = 0.45 if setup_score else 0.3
        if alternatives:
            reasoning = "the request offers alternatives (setup or execution); ask which one is meant"
        elif setup_score:
            reasoning = "setup and execution keywords weigh the same"
        elif nouns:
            reasoning = f"names data ({', '.join(nouns)}) but no action to take on it"
        elif not content and not quoted:
            reasoning = "conversational: no data action requested"
        else:
            reasoning = "no setup or execution keywords; the request reads as a bare topic"
    elif setup_score > exec_score:
        intent, action = "setup", "setup_pipeline"
        confidence = 0.5 + 0.45 * margin / (margin + 2)
        reasoning = (f"setup keywords ({', '.join(setup_kw)}) outweigh execution keywords"
                     + (f" ({', '.join(exec_kw)})" if exec_kw else ""))
    else:
        intent, action = "execution", "execute_retriever"
        confidence = 0.5 + 0.45 * margin / (margin + 2)
        cues = exec_kw or [h.phrase for h in hits if h.cls == "descriptive"]
        reasoning = (f"execution keywords ({', '.join(cues)}) outweigh setup keywords"
                     + (f" ({', '.join(setup_kw)})" if setup_kw else ""))
    if negated:
        reasoning += f"; negated, so ignored: {', '.join(negated)}"

    scope = {tokens[k] for k in range(len(tokens)) if k not in topic}
    scoped = " " + " ".join(t for k, t in enumerate(tokens) if k not in topic) + " "
    if intent == "ambiguous" and not alternatives and not setup_score:
        if nouns:
            event_intent = "data_browse"
        elif content or quoted:
            event_intent = "retriever_search"
        else:
            event_intent = "conversation"
    elif intent == "ambiguous":  # both kinds of action: show what is there, and ask
        event_intent = "data_browse"
    elif intent == "setup":
        pipeline = any(f" {w} " in scoped for w in _PIPELINE_WORDS) or any(
            h.phrase in _PIPELINE_WORDS for h in hits)
        managed = any(h.cls == "manage" for h in hits)
        event_intent = ("collection_management" if ("collection" in scope or managed) and not pipeline
                        else "pipeline_setup")
    else:
        searched = any(h.cls == "exec" and h.phrase in _STRONG_SEARCH and h.weight >= 2 for h in hits)
        browse = any(h.cls == "browse" for h in hits) or bool(_STRUCTURE & scope)
        event_intent = "data_browse" if browse and not searched else "retriever_search"
    category = {"conversation": "general", "data_browse": "data", "retriever_search": "retriever",
                "collection_management": "write", "pipeline_setup": "setup"}[event_intent]
    return Classification(intent, round(min(confidence, 0.95), 2), reasoning, action, intent == "ambiguous",
                          kw, event_intent, category)
