"""The README's samples as steps to run, and the matcher that compares a sample's output with
the output the README shows (pure code: `tests/test_readme_samples.py` runs the steps).

The convention, in the README's source:

- A fenced block whose info string is `sh` or `python` is a sample, and it is run, in the
  order of the page, against one stack as `make run` builds it. Every other fence (`text`,
  `yaml`, `ini`, `toml`, `js`, a bare fence, ...) is never run.
- `<!-- not run: <reason> -->` on the line right before a `sh`/`python` fence: that sample is
  not run; the reason is required (it says what else proves the sample, or why it cannot run
  here: an external provider, a long-running server, another topology).
- `<!-- output -->` on the line right before a fence: that block is the output of the sample
  right above it (a `python` block, or an `sh` script without prompts).
- An `sh` block with `$ ` prompts is a transcript: each `$ ` line (with its `\\`-continued
  lines) is one command, run by bash in the same shell state (`export` carries over), and the
  lines up to the next prompt are its output (none shown: it must print nothing).
- All `python` samples run in one interpreter, one after the other, like a pasted session;
  its environment is the shell's (`export KEY=...` above it).

In an output:

- `…` inside a line stands for any text in that line; a line that starts with `…` stands
  for any number of lines (the rest of that line is a comment for the reader).
- Values that differ from run to run are masked: ids (`ses_…`, `msg_…`, `col_…`, ...), API
  keys, entry ids (`<ms>-<seq>`), stream tokens, timestamps, `latency_ms` figures and byte
  counts. Ids, keys and entry ids are bound: the first time the README's value is matched, it
  stands for the value this run produced, and must stand for that same value everywhere after
  (outputs and commands alike), so `export SID=ses_…` as pasted, or a `Last-Event-ID` copied
  from the walk-through, works.
- `localhost:8000` and `127.0.0.1:8000` are the stack's own address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RUN_LANGS = {"sh", "python"}
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")

# Values bound across the whole README (the README's value stands for one value of this run).
BOUND = [
    r"\b(?:ses|msg|ns|org|col|doc|exec|run|req|key|ret|cnf|conf)_[a-z0-9]{16}\b",
    r"\bsk_[A-Za-z0-9_-]{32}\b",
    r"(?<![\d.])\d{13}-\d+\b",
]
BOUND_ACTUAL = {
    0: r"(?:ses|msg|ns|org|col|doc|exec|run|req|key|ret|cnf|conf)_[a-z0-9]{16}",
    1: r"sk_[A-Za-z0-9_-]{32}",
    2: r"\d{13}-\d+",
}
# Values masked but not bound: each matches any value of its kind.
MASKED = [
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
    (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"),
    (r"(?<=latency_ms\":)\d+(?:\.\d+)?", r"\d+(?:\.\d+)?"),
    (r"(?<=latency_ms=)\d+(?:\.\d+)?", r"\d+(?:\.\d+)?"),
    (r"\d+(?= bytes\))", r"\d+"),
    (r"(?<=ast1\.)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*", r"[A-Za-z0-9_.-]*"),
]
TOKEN = re.compile("|".join(f"({p})" for p in BOUND + [m for m, _ in MASKED]) + "|(…)")
PORT = re.compile(r"\b(localhost|127\.0\.0\.1):8000\b")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # the opening fence's line, 1-based
    marker: str | None


@dataclass
class Step:
    kind: str  # "sh" or "python"
    code: str
    expected: str | None  # None: no output shown, so only success is checked
    line: int


@dataclass
class Skipped:
    line: int
    reason: str


def blocks(markdown: str) -> list[Block]:
    lines = markdown.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang = lines[i][3:].strip().split(" ", 1)[0]
            m = MARKER.match(lines[i - 1].strip()) if i else None
            start = i
            i += 1
            body: list[str] = []
            while lines[i] != "```":
                body.append(lines[i])
                i += 1
            out.append(Block(lang, "\n".join(body), start + 1, m.group(1) if m else None))
        i += 1
    return out


def steps(markdown: str) -> tuple[list[Step], list[Skipped]]:
    """The samples to run in order, and the ones marked not run. Raises ValueError on a
    block that breaks the convention (an output with no sample above it, a reason missing)."""
    run: list[Step] = []
    skipped: list[Skipped] = []
    previous: Step | None = None
    for b in blocks(markdown):
        if b.marker == "output":
            if previous is None or previous.expected is not None:
                raise ValueError(f"README line {b.line}: an output block with no sample right above it")
            previous.expected = b.text
            previous = None
            continue
        previous = None
        if b.lang not in RUN_LANGS:
            continue
        if b.marker is not None and b.marker.startswith("not run"):
            reason = b.marker.removeprefix("not run").lstrip(":").strip()
            if not reason:
                raise ValueError(f"README line {b.line}: `not run` needs a reason")
            skipped.append(Skipped(b.line, reason))
            continue
        if b.marker is not None:
            raise ValueError(f"README line {b.line}: unknown marker {b.marker!r}")
        if b.lang == "sh" and any(line.startswith("$ ") for line in b.text.splitlines()):
            run.extend(_transcript(b))
        else:
            previous = Step(b.lang, b.text, None, b.line)
            run.append(previous)
    return run, skipped


def _transcript(b: Block) -> list[Step]:
    out: list[Step] = []
    lines = b.text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise ValueError(f"README line {b.line + 1 + i}: a transcript's output with no command above it")
        first = b.line + 1 + i
        cmd = [lines[i][2:]]
        while cmd[-1].rstrip().endswith("\\"):
            i += 1
            cmd.append(lines[i])
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        out.append(Step("sh", "\n".join(cmd), "\n".join(output).strip("\n"), first))
    return out


@dataclass
class Bindings:
    """The README's value → this run's value, for ids, keys and entry ids."""

    values: dict[str, str] = field(default_factory=dict)
    port: int = 8000

    def apply(self, code: str) -> str:
        """A sample's code as this run must execute it."""
        code = PORT.sub(lambda m: f"{m.group(1)}:{self.port}", code)
        return re.compile("|".join(BOUND)).sub(lambda m: self.values.get(m.group(0), m.group(0)), code)


def normalise(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def compile_expected(expected: str, bindings: Bindings) -> tuple[list[str], dict[str, str]]:
    """The expected output as regex pieces, one per line, over the actual output, and each
    capture group's README value."""
    groups: dict[str, str] = {}  # group name → README value
    named: dict[str, str] = {}  # README value → group name (first occurrence in this block)
    parts: list[str] = []
    for line in normalise(PORT.sub(lambda m: f"{m.group(1)}:{bindings.port}", expected)).split("\n"):
        if line.lstrip().startswith("…"):
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        piece, pos = [], 0
        for m in TOKEN.finditer(line):
            piece.append(re.escape(line[pos:m.start()]))
            pos = m.end()
            value, kind = m.group(0), (m.lastindex or 0) - 1
            if value == "…":
                piece.append(r"[^\n]*?")
            elif kind < len(BOUND):
                if value in bindings.values:
                    piece.append(re.escape(bindings.values[value]))
                elif value in named:
                    piece.append(f"(?P={named[value]})")
                else:
                    name = f"g{len(groups)}"
                    groups[name], named[value] = value, name
                    piece.append(f"(?P<{name}>{BOUND_ACTUAL[kind]})")
            else:
                piece.append(MASKED[kind - len(BOUND)][1])
        piece.append(re.escape(line[pos:]))
        parts.append("".join(piece) + r"\n")
    return parts, groups


def compare(expected: str, actual: str, bindings: Bindings) -> str | None:
    """None when `actual` is what the README shows (and the bindings learn its values), else
    what differs, for the failure message."""
    text = normalise(actual) + "\n" if normalise(actual) else ""
    if not normalise(expected):
        return None if not text else f"the README shows no output; the sample printed:\n{actual}"
    parts, groups = compile_expected(expected, bindings)
    m = re.fullmatch("".join(parts), text)
    if m is not None:
        for name, value in groups.items():
            bindings.values[value] = m.group(name)
        return None
    # The first README line from which no match is possible, to point at it.
    shown = normalise(expected).split("\n")
    good = 0
    for n in range(1, len(parts) + 1):
        try:
            if re.match("".join(parts[:n]), text) is None:
                break
        except re.error:  # a back-reference to a group of a later line
            break
        good = n
    got = re.match("".join(parts[:good]), text)
    rest = text[got.end():] if got else text
    return (f"README output line {good + 1} of {len(shown)} does not match:\n  README: {shown[good]}\n"
            f"  actual: {rest.split(chr(10), 1)[0][:2000]}\nthe whole output:\n{actual[:6000]}")
