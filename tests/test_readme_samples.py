"""The README's shell and Python samples, run in order against one stack as `make run` builds
it, each output compared with the one the README shows (issue 19: a README that cannot drift).

The convention in the README's source, and what is masked, is in `tests/readme.py`'s
docstring: `sh` and `python` fences run (`<!-- not run: reason -->` before one skips it),
`<!-- output -->` marks the output of the sample above, `$ ` prompts make a transcript, `…`
elides, ids/keys/entry ids are bound from the README's value to this run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import readme
from tests.stack import ROOT, free_port

README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.integration

# One interpreter for every `python` sample, like a pasted session: each sample's stdout and
# stderr (a traceback too) come back as one JSON line.
DRIVER = r"""
import contextlib, io, json, sys, traceback
scope = {"__name__": "__main__"}
for line in sys.stdin:
    out, ok = io.StringIO(), True
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            exec(compile(json.loads(line), "<README sample>", "exec"), scope)
        except BaseException:
            ok = False
            traceback.print_exc()
    sys.__stdout__.write(json.dumps({"ok": ok, "out": out.getvalue()}) + "\n")
    sys.__stdout__.flush()
"""


class Dev:
    """`agentstream dev` (what `make run` runs) on a free port and a data dir of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="as-readme-"))
        self.data = self.dir / "data"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTREAM_", "ANTHROPIC_", "OPENAI_"))}
        env.update({"AGENTSTREAM_DATA_DIR": str(self.data), "AGENTSTREAM_PORT": str(self.port),
                    "AGENTSTREAM_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
        self.env = env
        self.log = (self.dir / "dev.log").open("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "dev"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_banner()

    def _wait_banner(self) -> None:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.log.seek(0)
            if "agentstream is up" in self.log.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.log.seek(0)
        raise RuntimeError(f"`agentstream dev` did not come up:\n{self.log.read()}")

    @property
    def key(self) -> str:
        return (self.data / "dev-api-key").read_text().strip()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Shell:
    """Commands as a user types them: bash, the venv's commands on PATH (`source
    .venv/bin/activate`), the stack's environment, and `export`s kept from one to the next."""

    def __init__(self, dev: Dev) -> None:
        self.cwd = dev.dir / "work"
        self.cwd.mkdir()
        self.state = dev.dir / "shell-state"
        self.state.write_text("")
        self.env = {**dev.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.python: subprocess.Popen[str] | None = None

    def sh(self, command: str) -> tuple[int, str]:
        script = f'source "{self.state}"\n{command}\nrc=$?\nexport -p > "{self.state}"\nexit $rc\n'
        p = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        return p.returncode, p.stdout

    def py(self, code: str) -> tuple[int, str]:
        if self.python is None:
            env = dict(line.split("=", 1) for line in
                       self.sh("env -0")[1].split("\0") if "=" in line)
            self.python = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=self.cwd, env=env, text=True,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.python.stdin and self.python.stdout
        self.python.stdin.write(json.dumps(code) + "\n")
        self.python.stdin.flush()
        answer = json.loads(self.python.stdout.readline())
        return (0 if answer["ok"] else 1), answer["out"]

    def close(self) -> None:
        if self.python is not None:
            assert self.python.stdin and self.python.stdout
            self.python.stdin.close()
            self.python.wait(timeout=30)
            self.python.stdout.close()


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    d = Dev()
    yield d
    d.stop()


def test_every_sample_is_run_or_says_why_not() -> None:
    run, skipped = readme.steps(README)
    assert run, "no README sample is run"
    for s in skipped:
        assert len(s.reason) > 10, f"README line {s.line}: say why the sample is not run"
    for b in readme.blocks(README):
        assert b.lang in readme.RUN_LANGS | {"", "text", "js", "toml", "yaml", "ini", "json"}, \
            f"README line {b.line}: fence `{b.lang}`: use `sh` or `python` for a sample, `text` for anything else"


def test_the_readme_samples_print_what_the_readme_shows(dev: Dev) -> None:
    run, _ = readme.steps(README)
    # The walk-through's key is "the one `make run` printed".
    first_key = readme.re.search(readme.BOUND[1], README)
    assert first_key
    bindings = readme.Bindings({first_key.group(0): dev.key}, dev.port)
    shell = Shell(dev)
    try:
        for step in run:
            code = bindings.apply(step.code)
            rc, out = shell.sh(code) if step.kind == "sh" else shell.py(code)
            where = f"README line {step.line}: {step.code.splitlines()[0][:100]}"
            assert rc == 0, f"{where}\nexited {rc}:\n{out}"
            if step.expected is not None:
                diff = readme.compare(step.expected, out, bindings)
                assert diff is None, f"{where}\nthe output differs from the README's:\n{diff}"
    finally:
        shell.close()


# The matcher itself (pure): what it lets through and what it does not.

def test_a_changed_figure_fails_and_masked_values_do_not() -> None:
    shown = '{"session_id":"ses_m4zax9alsv6pvy4n","confidence":0.75,"latency_ms":3.7,"created_at":"2026-12-01T06:38:30.759Z"}'
    same = '{"session_id":"ses_0000000000000001","confidence":0.75,"latency_ms":12.0,"created_at":"2027-01-02T00:00:00.000Z"}'
    assert readme.compare(shown, same, readme.Bindings()) is None
    assert readme.compare(shown, same.replace("0.75", "0.9"), readme.Bindings()) is not None


def test_an_id_stands_for_one_value_everywhere() -> None:
    b = readme.Bindings()
    assert readme.compare("x-message-id: msg_wvnoeugxxh7coras", "x-message-id: msg_aaaaaaaaaaaaaaaa", b) is None
    assert readme.compare('{"message_id":"msg_wvnoeugxxh7coras"}', '{"message_id":"msg_bbbbbbbbbbbbbbbb"}', b) is not None
    assert b.apply("export MID=msg_wvnoeugxxh7coras") == "export MID=msg_aaaaaaaaaaaaaaaa"
    # within one output too
    assert readme.compare("msg_wvnoeugxxh7coras msg_wvnoeugxxh7coras", "msg_aaaaaaaaaaaaaaaa msg_cccccccccccccccc",
                          readme.Bindings()) is not None


def test_elisions_stand_for_text_in_a_line_and_for_whole_lines() -> None:
    shown = "retry: 2000\n…        (the tokens)\nevent: done\ndata: {\"tool_calls_made\":2,…}"
    actual = "retry: 2000\nevent: token\ndata: {}\n\nevent: done\ndata: {\"tool_calls_made\":2,\"x\":1}"
    assert readme.compare(shown, actual, readme.Bindings()) is None
    assert readme.compare(shown, actual.replace("tool_calls_made\":2", "tool_calls_made\":3"), readme.Bindings())
    assert readme.compare("", "something printed", readme.Bindings()) is not None


def test_a_sample_is_run_unless_marked_with_a_reason() -> None:
    page = "```sh\n$ echo hi\nhi\n```\n<!-- not run: needs a GPU for this one -->\n```python\nboom()\n```\n" \
           "```yaml\na: 1\n```\n```python\nprint(1)\n```\n<!-- output -->\n```\n1\n```\n"
    run, skipped = readme.steps(page)
    assert [(s.kind, s.code, s.expected) for s in run] == [("sh", "echo hi", "hi"), ("python", "print(1)", "1")]
    assert [s.reason for s in skipped] == ["needs a GPU for this one"]
    with pytest.raises(ValueError, match="needs a reason"):
        readme.steps("<!-- not run -->\n```sh\nmake run\n```\n")
    with pytest.raises(ValueError, match="no sample right above"):
        readme.steps("```text\nx\n```\n<!-- output -->\n```\ny\n```\n")
