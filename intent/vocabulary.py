"""The classifier's vocabulary: weighted keyword tables, the word lists the reading rules use, and
the instruction words exported for the data plane's collection matcher."""

from __future__ import annotations

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
