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
from functools import lru_cache

# --- the vocabulary -------------------------------------------------------------------------
# Weights: a verb in verb position counts its weight, the same word used as a noun half of it.

_EXEC_VERBS = {  # content retrieval
    "search": 2, "find": 2, "look for": 2, "look up": 2, "lookup": 2, "locate": 2, "retrieve": 2,
    "query": 2, "fetch": 2, "pull up": 2, "dig up": 2, "play": 2, "watch": 1, "summarize": 2,
    "summarise": 2, "compare": 2, "explain": 2, "tell me about": 2, "similar to": 2, "say about": 2,
    "talk about": 1, "show me": 1, "show": 1, "give me": 1, "get": 1, "mention": 1, "contain": 1,
    "looking for": 2, "search for": 2, "analyze": 1, "analyse": 1,
}
_BROWSE = {  # execution over the namespace itself: the data_browse event
    "list": 2, "enumerate": 2, "what collection": 2, "which collection": 2, "show collection": 2,
    "what is in": 2, "what data": 2, "kind of data": 2, "type of data": 2, "what can i search": 2,
    "overview": 2, "schema": 2, "status": 1, "data source": 2, "inventory": 1, "describe": 1,
    "what retriever": 2, "which retriever": 2,
}
_QUESTIONS = {  # interrogatives: execution, weakly, and only about content
    "what": 1, "which": 1, "who": 1, "where": 1, "when": 1, "how many": 1.5, "how much": 1,
    "is there": 1, "are there": 1, "do we have": 1.5, "do i have": 1.5, "have we got": 1, "any": 1,
}
_SETUP_VERBS = {
    "setup": 2, "configure": 2, "create": 2, "ingest": 2, "upload": 2, "index": 2, "reindex": 2,
    "import": 2, "install": 2, "build": 2, "add": 2, "connect": 2, "sync": 2, "schedule": 2,
    "process": 2, "prepare": 2, "change": 2, "update": 1.5, "modify": 2, "enable": 2, "disable": 2,
    "transcribe": 1, "get started": 2, "start": 1.5, "spin up": 2, "make": 1,
    "make searchable": 2, "train": 1, "deploy": 2, "register": 1,
}
_MANAGE_VERBS = {  # destructive / structural changes to collections
    "delete": 2, "remove": 2, "drop": 2, "erase": 2, "wipe": 2, "wipe out": 2, "purge": 2,
    "get rid of": 2, "rename": 2, "clone": 2, "copy": 1,
}
_SETUP_PHRASES = {  # noun phrases that ask for a change wherever they stand: "I want a new collection"
    "new collection": 2, "fresh collection": 2, "another collection": 1.5,
}
_SETUP_NOUNS = {  # configuration vocabulary: a hint, not an instruction
    "pipeline": 0.5, "extractor": 0.5, "feature extractor": 0.5, "embedding": 0.5, "ocr": 0.5,
    "chunking": 0.5, "ingestion": 0.5, "transcription": 0.5, "reranker": 0.5, "webhook": 0.5,
    "bucket": 0.5, "s3": 0.5, "dropbox": 0.5, "model": 0.5, "searchable": 1,
}
# what an execution request's browse / a setup request's management is about
_STRUCTURE = {"collection", "retriever", "namespace", "data"}
_PIPELINE_WORDS = {"pipeline", "extractor", "feature extractor", "embedding", "ocr", "chunking", "ingestion",
                   "transcription", "reranker", "webhook", "retriever", "model", "ingest", "upload", "index",
                   "reindex", "configure", "import", "sync", "process", "transcribe", "make searchable",
                   "bucket", "s3", "dropbox"}
_STRONG_SEARCH = {"search", "find", "look for", "look up", "lookup", "locate", "retrieve", "query", "fetch",
                  "pull up", "dig up", "play", "looking for", "search for", "similar to", "say about",
                  "tell me about", "summarize", "summarise", "compare", "explain"}
_DATA_NOUNS = ("video", "image", "document", "doc", "pdf", "photo", "picture", "clip", "footage",
               "audio", "recording", "file", "face", "text", "transcript", "slide", "collection",
               "retriever", "data", "dataset", "media", "podcast", "screenshot")
_CHAT = frozenset(
    "hello hi hey heya hiya howdy yo sup greetings thanks thank thx ty cheers bye goodbye later ok okay k kk "
    "cool great nice awesome perfect wonderful lovely excellent hmm hm huh lol yes yeah yep yup sure no nope "
    "help helpful please pls plz you your yourself assistant bot agent tool app morning afternoon evening "
    "night good again much mean meant wrong sorry welcome well fine alright whatever nevermind sup".split())
_STOP = frozenset(
    "a an the my our your their his her its this that these those some all every each me us i we it they them "
    "he she is are was were be been being am do does did done have has had having can could would will shall "
    "should may might must to of in on at by for from with without into onto over under up down out off "
    "and or but if then than so as just also only too very really now first yet still there here "
    "what which who whom whose where when why how not no never any anything something stuff things thing "
    "want wanna need gonna like let lets u ur im one ones more most other new old last next same such "
    "use using used know see try make get go going got way "
    "zero two three four five six seven eight nine ten twenty hundred thousand".split())
_VAGUE = frozenset("something stuff things thing anything everything whatever bunch lot lots".split())
_NEGATORS = frozenset({"not", "no", "never", "without", "nothing", "neither", "nor"})
_NEGATION_STOP = frozenset({"just", "but", "only", "instead", "rather", "first", "then", "and", "|"})
# a following noun phrase describes content: it is the subject of the query
_TOPIC_OPENERS = frozenset({"about", "regarding", "concerning", "from", "mentioning", "re"})
_NOUN_OPENERS = frozenset({"of", "for"})  # "images of golden retrievers": after a noun, a subject follows
_DESCRIPTIVE = frozenset({"where", "with", "that", "which", "who", "containing", "showing", "featuring",
                          "mentioning", "whose", "tagged", "mention", "about"})
# what may precede a word for it to be read as a verb rather than part of a noun phrase
_DETERMINERS = frozenset({"a", "an", "the", "my", "our", "your", "their", "this", "that", "these", "those",
                          "some", "its", "his", "her", "each", "every", "all"})
_YES_NO = frozenset({"is", "are", "does", "do", "did", "has", "have", "was", "were"})  # sentence-initial
_VERB_LEAD = frozenset({"|", "i", "we", "you", "u", "to", "me", "us", "and", "then", "or", "can", "could",
                        "would", "will", "should", "let", "lets", "please", "pls", "plz", "help", "just", "also",
                        "now", "first", "want", "wanna", "need", "gonna", "go", "quickly", "kindly", "not",
                        "do", "how", "what", "try", "it", "start", "and then", "ll"})
_FUZZY_TARGETS = ("search", "find", "list", "create", "delete", "remove", "upload", "ingest", "index", "configure",
                  "collection", "retriever", "pipeline", "extractor", "document", "video", "image", "setup",
                  "query", "retrieve", "install", "import", "rename", "summarize", "hello", "thanks")
_NO_FIX = frozenset(
    "there these those their other about would could should thing think where while which whose "
    "white write wrote first things start store state stats after under again every found fired "
    "index indexes video image label lists searches finds based deletes source sources".split())

_SETUP_CLASSES = frozenset({"setup", "manage", "setup_np", "setup_noun"})
_EXEC_CLASSES = frozenset({"exec", "browse", "question", "descriptive"})
_SCORES: dict[str, tuple[str, float]] = {}
for _table, _cls in ((_EXEC_VERBS, "exec"), (_BROWSE, "browse"), (_QUESTIONS, "question"),
                     (_SETUP_VERBS, "setup"), (_MANAGE_VERBS, "manage"), (_SETUP_PHRASES, "setup_np"),
                     (_SETUP_NOUNS, "setup_noun")):
    for _k, _w in _table.items():
        _SCORES.setdefault(_k, (_cls, _w))
_PHRASES = sorted(_SCORES, key=lambda p: -len(p.split()))
_MAX_PHRASE = max(len(p.split()) for p in _PHRASES)

# Exported for dataplane/service.py: words that say what to do, not what about (a superset of the
# instruction words this module has always exported; content nouns stay out).
SETUP = ("setup", "set up", "create", "configure", "index", "ingest", "upload", "pipeline",
         "build", "add collection", "new collection", "install", "extractor", "import", "delete",
         "remove", "drop", *(k for k in (*_SETUP_VERBS, *_MANAGE_VERBS) if k not in ("make", "start", "change")))
EXECUTION = ("search", "find", "look for", "look up", "show me", "retrieve", "query", "which",
             "what", "who", "where", "when", "list", "get", "fetch", "how many", "about", "tell me",
             "documents", "results", "explain", "summarize", "compare",
             *(k for k in (*_EXEC_VERBS, *_QUESTIONS) if k not in ("play", "watch", "contain", "mention")))
NEUTRAL = ("video", "videos", "image", "images", "document", "documents", "collection", "collections", "data",
           "faces", "text", "audio", "retriever", "retrievers")
GREETING = ("hello", "hi", "hey", "thanks", "thank you", "good morning", "how are you")


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


@lru_cache(maxsize=4096)
def _repair(word: str) -> str:
    """A typo of a vocabulary word, repaired; anything else unchanged."""
    if word in _KNOWN or word in _NO_FIX or not word.isalpha():
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
