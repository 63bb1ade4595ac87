"""Which models a session may ask for, and which provider serves each: the model catalogue.

Read once at start-up from ``AGENTSTREAM_MODELS``: JSON, or the path of a ``.json`` / ``.toml``
file holding the same document::

    {"default": "llama3.2",
     "models": {"llama3.2": {"provider": "openai", "base_url": "http://127.0.0.1:11434/v1"},
                "gpt-4o*": {"provider": "openai", "api_key_env": "OPENAI_API_KEY", "temperature": 0.2}}}

A name ending in ``*`` is a prefix: the session's model name goes to the provider as given. An
exact name wins over prefixes, a longer prefix over a shorter one. Two entries need no
configuration: the built-in model, always, and Claude (the names below, not Opus) when an
Anthropic key is set, as before the catalogue existed. The gateway resolves a session's model
here when the session is created (422 if it cannot run); the worker resolves it again to build
the provider client, with the same answer since both read the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from shared.errors import Invalid
from shared.models import BUILTIN_MODEL, DEFAULT_MODEL
from shared.settings import Secret, Settings

# Claude families served without configuration when an Anthropic key is set.
CLAUDE_PREFIXES = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4", "claude-3-5-sonnet",
                   "claude-3-5-haiku", "claude-3-7-sonnet", "claude-3-haiku")
OPENAI_BASE_URL = "https://api.openai.com/v1"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_T = TypeVar("_T")


class CatalogueError(ValueError):
    """The catalogue document is malformed; the settings name the variable around this message."""


class _EntrySpec(msgspec.Struct, forbid_unknown_fields=True):
    provider: Literal["anthropic", "openai"]
    base_url: str | None = None
    api_key_env: str | None = None
    model: str | None = None  # the provider's own name for it, when the catalogue name is an alias
    max_tokens: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    max_retries: Annotated[int, Meta(ge=0, le=10)] = 2
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


class _Spec(msgspec.Struct, forbid_unknown_fields=True):
    models: dict[str, Any] = msgspec.field(default_factory=dict)  # each checked as an _EntrySpec
    default: str | None = None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    pattern: str  # an exact name, or a prefix ending in "*"
    provider: str  # "anthropic" | "openai"
    base_url: str | None = None
    api_key_env: str | None = None  # where the key came from (shown in errors, never the key)
    api_key: Secret | None = None
    upstream: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float = 60.0  # connect, and every read of the stream: a stalled server fails the step
    max_retries: int = 2  # the SDK's retries of refusals (429, 5xx) and connection failures
    max_tokens_field: str = "max_tokens"

    @property
    def is_prefix(self) -> bool:
        return self.pattern.endswith("*")

    def matches(self, name: str) -> bool:
        return name.startswith(self.pattern[:-1]) if self.is_prefix else name == self.pattern

    @property
    def needs_key(self) -> bool:
        return self.api_key_env is not None

    def upstream_name(self, name: str) -> str:
        return self.upstream or name


@dataclass(frozen=True, slots=True)
class ModelCatalogue:
    entries: tuple[ModelEntry, ...] = ()
    default: str | None = None

    def find(self, name: str) -> ModelEntry | None:
        exact = [e for e in self.entries if not e.is_prefix and e.matches(name)]
        if exact:
            return exact[0]
        prefixes = [e for e in self.entries if e.is_prefix and e.matches(name)]
        return max(prefixes, key=lambda e: len(e.pattern), default=None)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a session's model name runs on."""

    name: str  # the catalogue name (the session's effective model)
    provider: str  # "builtin" | "anthropic" | "openai"
    entry: ModelEntry | None = None  # None for the built-in model


def load(raw: str, env: dict[str, str] | Any) -> ModelCatalogue:
    """Parse the setting's value (JSON, or a path to a .json / .toml file) and read the keys it names."""
    text = raw.strip()
    if text.startswith("{"):
        document = _json_document(text, "the value")
    else:
        path = Path(text).expanduser()
        if path.suffix not in (".json", ".toml"):
            raise CatalogueError(f"expected a JSON object or the path of a .json or .toml file, got {raw!r}")
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if path.suffix == ".toml":
            try:
                document = tomllib.loads(content)
            except tomllib.TOMLDecodeError as exc:
                raise CatalogueError(f"{path} is not valid TOML: {exc}") from None
        else:
            document = _json_document(content, str(path))
    return from_document(document, env)


def _json_document(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CatalogueError(f"{where} is not valid JSON: {exc}") from None


def from_document(document: Any, env: dict[str, str] | Any) -> ModelCatalogue:
    spec = _convert(document, _Spec, "")
    entries = []
    for pattern, raw_entry in spec.models.items():
        if isinstance(raw_entry, dict) and "api_key" in raw_entry:
            raise CatalogueError(f"models.{pattern}.api_key: keys are not written in the catalogue; put the key "
                                 "in an environment variable and name it with api_key_env")
        e = _convert(raw_entry, _EntrySpec, f"models.{pattern}")
        if not pattern.strip() or "*" in pattern[:-1]:
            raise CatalogueError(f"model name {pattern!r}: a name, or a prefix with one '*' at its end")
        if pattern == BUILTIN_MODEL:
            raise CatalogueError(f"model name {pattern!r} is the built-in model's and cannot be configured")
        base_url = e.base_url
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise CatalogueError(f"models.{pattern}.base_url: must start with http:// or https:// "
                                 f"(got {base_url!r})")
        if e.api_key_env is not None and not _ENV_NAME.fullmatch(e.api_key_env):
            raise CatalogueError(f"models.{pattern}.api_key_env: the name of an environment variable "
                                 f"(got {e.api_key_env!r})")
        if e.model is not None and (pattern.endswith("*") or not e.model.strip()):
            raise CatalogueError(f"models.{pattern}.model: only an exact name can be an alias")
        key_env = e.api_key_env
        key = env.get(key_env) if key_env else None
        if e.provider == "openai" and base_url is None:
            base_url = OPENAI_BASE_URL
        entries.append(ModelEntry(
            pattern=pattern, provider=e.provider, base_url=base_url.rstrip("/") if base_url else None,
            api_key_env=key_env, api_key=Secret(key) if key else None, upstream=e.model,
            max_tokens=e.max_tokens, temperature=e.temperature, timeout_s=e.timeout_s,
            max_retries=e.max_retries, max_tokens_field=e.max_tokens_field))
    catalogue = ModelCatalogue(tuple(entries), spec.default)
    if spec.default is not None and spec.default != BUILTIN_MODEL and catalogue.find(spec.default) is None \
            and not _is_claude(spec.default):
        raise CatalogueError(f"default: {spec.default!r} is not among the configured models")
    return catalogue


def _convert(value: Any, type_: type[_T], where: str) -> _T:
    """msgspec's check, its message led by the place in the document ("models.x.provider: ...")."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        place = where + path.rstrip("`")
        raise CatalogueError(f"{place.lstrip('.')}: {message}" if place else message) from None


def _is_claude(name: str) -> bool:
    return name.startswith(CLAUDE_PREFIXES) and "opus" not in name


def _claude(settings: Settings) -> ModelEntry:
    return ModelEntry(pattern="claude-*", provider="anthropic", base_url=settings.anthropic_base_url,
                      api_key_env="ANTHROPIC_API_KEY", api_key=settings.anthropic_api_key)


def catalogue_of(settings: Settings) -> ModelCatalogue:
    return settings.models or ModelCatalogue()


def default_model(settings: Settings) -> str:
    """The model of a session that names none: the configured default, else Claude when an
    Anthropic key is set, else the built-in model."""
    configured = catalogue_of(settings).default
    if configured:
        return configured
    return DEFAULT_MODEL if settings.anthropic_api_key else BUILTIN_MODEL


def available(settings: Settings) -> list[str]:
    """The names and prefixes a session may ask for now (those whose key is missing left out)."""
    out = [BUILTIN_MODEL]
    out += [e.pattern for e in catalogue_of(settings).entries if not e.needs_key or e.api_key]
    if settings.anthropic_api_key:
        out += [p + "*" for p in CLAUDE_PREFIXES]
    return out


def resolve(settings: Settings, requested: str | None) -> Resolved:
    """The model a session asking for ``requested`` runs on, or ``Invalid`` (422) saying why not."""
    name = requested or default_model(settings)
    if name == BUILTIN_MODEL:
        return Resolved(name, "builtin")
    entry = catalogue_of(settings).find(name)
    if entry is not None and entry.provider == "anthropic":
        # What an Anthropic entry leaves out comes from the Anthropic settings, as for Claude.
        if not entry.needs_key:
            entry = dataclasses.replace(entry, api_key_env="ANTHROPIC_API_KEY", api_key=settings.anthropic_api_key)
        if entry.base_url is None:
            entry = dataclasses.replace(entry, base_url=settings.anthropic_base_url)
    if entry is None and _is_claude(name):
        entry = _claude(settings)
    if entry is None:
        names = available(settings)
        raise Invalid(f"Model {name!r} is not available on this server; configured models: {', '.join(names)}",
                      code="unsupported_model", details={"model": name, "available_models": names})
    if entry.needs_key and not entry.api_key:
        if settings.fallback_to_builtin:
            return Resolved(BUILTIN_MODEL, "builtin")
        raise Invalid(f"Model {name!r} needs {entry.api_key_env} on the server; none is configured",
                      code="model_not_configured", details={"model": name, "api_key_env": entry.api_key_env})
    return Resolved(name, entry.provider, entry)

