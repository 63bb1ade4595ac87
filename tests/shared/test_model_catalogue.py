"""The model catalogue: AGENTSTREAM_MODELS parsed at start-up, and a session's model resolved."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from shared.errors import Invalid
from shared.model_catalogue import available, default_model, resolve
from shared.settings import Settings, SettingsError
from tests.stack import ROOT

VAR = "AGENTSTREAM_MODELS"


def settings(doc: dict[str, Any] | str | None = None, **env: str) -> Settings:
    values = dict(env)
    if doc is not None:
        values[VAR] = doc if isinstance(doc, str) else json.dumps(doc)
    return Settings.from_env(values)


LOCAL = {"models": {
    "llama3.2": {"provider": "openai", "base_url": "http://127.0.0.1:11434/v1/"},
    "gpt-4o*": {"provider": "openai", "api_key_env": "MY_OPENAI_KEY", "temperature": 0.2},
    "gpt-4o-mini*": {"provider": "openai", "base_url": "http://127.0.0.1:4000", "max_tokens": 256},
    "house": {"provider": "openai", "base_url": "http://127.0.0.1:8001/v1", "model": "Qwen/Qwen2.5-7B-Instruct"},
}}


def test_without_configuration_only_the_builtin_model_runs_and_is_the_default() -> None:
    s = settings()
    assert default_model(s) == "agentstream-builtin" and available(s) == ["agentstream-builtin"]
    r = resolve(s, None)
    assert (r.name, r.provider, r.entry) == ("agentstream-builtin", "builtin", None)
    with pytest.raises(Invalid) as caught:
        resolve(s, "gpt-4o")
    assert caught.value.code == "unsupported_model"
    assert caught.value.details == {"model": "gpt-4o", "available_models": ["agentstream-builtin"]}


def test_claude_runs_as_before_when_an_anthropic_key_is_set() -> None:
    s = settings(ANTHROPIC_API_KEY="sk-ant-x")
    assert default_model(s) == "claude-sonnet-4-5-20250929"
    r = resolve(s, "claude-haiku-4-5-20251001")
    assert r.provider == "anthropic" and r.entry is not None and r.entry.api_key is not None
    assert r.entry.api_key.reveal() == "sk-ant-x"
    with pytest.raises(Invalid) as caught:
        resolve(s, "claude-opus-4-1-20250805")
    assert caught.value.code == "unsupported_model"
    without = settings()
    with pytest.raises(Invalid) as caught:
        resolve(without, "claude-haiku-4-5")
    assert caught.value.code == "model_not_configured" and "ANTHROPIC_API_KEY" in caught.value.message
    assert resolve(settings(AGENTSTREAM_FALLBACK_TO_BUILTIN="true"), "claude-haiku-4-5").provider == "builtin"


def test_exact_names_then_the_longest_prefix() -> None:
    s = settings(LOCAL, MY_OPENAI_KEY="sk-openai")
    assert resolve(s, "llama3.2").entry.base_url == "http://127.0.0.1:11434/v1"  # type: ignore[union-attr]
    mini = resolve(s, "gpt-4o-mini-2024-07-18").entry
    assert mini is not None and mini.pattern == "gpt-4o-mini*" and mini.max_tokens == 256
    full = resolve(s, "gpt-4o-2024-08-06").entry
    assert full is not None and full.pattern == "gpt-4o*" and full.base_url == "https://api.openai.com/v1"
    assert full.api_key is not None and full.api_key.reveal() == "sk-openai" and "sk-openai" not in repr(full)
    house = resolve(s, "house").entry
    assert house is not None and house.upstream_name("house") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(Invalid) as caught:
        resolve(s, "llama3.2:1b")  # an exact name is not a prefix
    assert caught.value.details["available_models"] == [  # type: ignore[index]
        "agentstream-builtin", "llama3.2", "gpt-4o*", "gpt-4o-mini*", "house"]


def test_a_model_whose_key_variable_is_unset_is_not_configured() -> None:
    s = settings(LOCAL)
    assert "gpt-4o*" not in available(s)
    with pytest.raises(Invalid) as caught:
        resolve(s, "gpt-4o")
    assert caught.value.code == "model_not_configured" and "MY_OPENAI_KEY" in caught.value.message
    assert resolve(settings(LOCAL, AGENTSTREAM_FALLBACK_TO_BUILTIN="1"), "gpt-4o").provider == "builtin"


def test_the_configured_default() -> None:
    s = settings({**LOCAL, "default": "llama3.2"})
    assert default_model(s) == "llama3.2" and resolve(s, None).name == "llama3.2"


def test_an_anthropic_entry_uses_the_anthropic_key_unless_it_names_its_own() -> None:
    doc = {"models": {"claude-opus-4*": {"provider": "anthropic"},
                      "proxy-claude": {"provider": "anthropic", "base_url": "http://127.0.0.1:9000",
                                       "api_key_env": "PROXY_KEY", "model": "claude-sonnet-4-5"}}}
    s = settings(doc, ANTHROPIC_API_KEY="sk-ant", PROXY_KEY="sk-proxy",
                 AGENTSTREAM_ANTHROPIC_BASE_URL="http://127.0.0.1:8765")
    opus = resolve(s, "claude-opus-4-1").entry  # configured on purpose: allowed
    assert opus is not None and opus.api_key is not None and opus.api_key.reveal() == "sk-ant"
    assert opus.base_url == "http://127.0.0.1:8765"
    proxy = resolve(s, "proxy-claude").entry
    assert proxy is not None and proxy.api_key is not None and proxy.api_key.reveal() == "sk-proxy"
    assert proxy.base_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(("value", "says"), [
    ("{not json", "not valid JSON"),
    ('{"models": {"x": {"provider": "mistral"}}}', "models.x.provider: Invalid enum value 'mistral'"),
    ('{"models": {"x": {"provider": "openai", "base_url": "127.0.0.1:11434"}}}', "http://"),
    ('{"models": {"x": {"provider": "openai", "api_key_env": "sk-1234"}}}', "api_key_env"),
    ('{"models": {"x": {"provider": "openai", "temperature": 3}}}', "models.x.temperature: Expected `float` <= 2.0"),
    ('{"models": {"x": {"provider": "openai", "timeout_s": 0}}}', "models.x.timeout_s"),
    ('{"models": {"x": {"provider": "openai", "api_key": "sk-inline"}}}', "name it with api_key_env"),
    ('{"models": {"a*b": {"provider": "openai"}}}', "prefix"),
    ('{"models": {"p*": {"provider": "openai", "model": "q"}}}', "alias"),
    ('{"models": {"agentstream-builtin": {"provider": "openai"}}}', "built-in"),
    ('{"models": {}, "default": "nowhere"}', "default"),
    ('{"modles": {}}', "unknown field `modles`"),
    ('{"models": {"x": 3}}', "models.x: Expected `object`"),
    ("models.yaml", ".toml"),
    ("/nonexistent/models.toml", "cannot read"),
])
def test_a_malformed_catalogue_stops_start_up_naming_the_variable(value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({VAR: value})
    message = str(caught.value)
    assert message.startswith(f"{VAR}: ") and says in message, message
    assert "sk-inline" not in message


def test_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('default = "m"\n[models.m]\nprovider = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n'
                    'max_tokens = 10\n')
    s = settings(str(path))
    assert resolve(s, None).entry.max_tokens == 10  # type: ignore[union-attr]
    path.write_text("[models.m\n")
    with pytest.raises(SettingsError, match=f"^{VAR}: .*not valid TOML"):
        settings(str(path))


def _readme_models_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Models\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_readmes_samples_load_as_pasted(tmp_path: Path) -> None:
    section = _readme_models_section()
    (toml,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    path = tmp_path / "models.toml"
    path.write_text(toml)
    s = settings(str(path), OPENAI_API_KEY="sk-openai")
    for name in ("llama3.2", "qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct", "gpt-4o-mini"):
        assert resolve(s, name).provider == "openai", name
    assert resolve(s, None).name == "llama3.2"
    ollama = resolve(s, "llama3.2").entry
    assert ollama is not None and ollama.base_url == "http://127.0.0.1:11434/v1" and ollama.api_key is None
    vllm = resolve(s, "Qwen/Qwen2.5-7B-Instruct").entry
    assert vllm is not None and vllm.base_url == "http://127.0.0.1:8001/v1"

    # The one-line form: the shell command's AGENTSTREAM_MODELS='...' value, unquoted by a shell's rules.
    lines = [line for line in re.findall(r"```sh\n(.*?)```", section, re.S)[0].splitlines()
             if line.startswith(f"{VAR}=")]
    assert lines
    value = shlex.split(lines[0])[0].split("=", 1)[1]
    assert resolve(settings(value), "llama3.2").entry.base_url == "http://127.0.0.1:11434/v1"  # type: ignore[union-attr]
