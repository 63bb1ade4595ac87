"""``agentstream keys``: create, list, revoke and rotate API keys.

Secrets are printed once, by ``create`` and ``rotate``, and stored only as hashes; everything
else names a key by its public id (``key_...``) and shows the first characters of the secret.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from shared import backends
from shared.ids import iso, now_ms
from shared.settings import Settings
from shared.stores.apikeys import KeyInfo, KeyNotFound, KeyStore
from shared.stores.tenancy import SCOPES

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"^(\d+)([smhdw])$")


def parse_duration_ms(text: str) -> int:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w``."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive duration like 90s, 15m, 12h, 30d or 2w")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_expiry_ms(text: str) -> int:
    """A duration from now, or an ISO 8601 date/time (UTC unless it names a zone)."""
    if _DURATION.match(text.strip()):
        return now_ms() + parse_duration_ms(text)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration (30d, 12h) or an ISO 8601 time (2027-01-31T00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ms = int(when.timestamp() * 1000)
    if ms <= now_ms():
        raise argparse.ArgumentTypeError(f"{text!r} is in the past")
    return ms


def _run(settings: Settings, fn: Callable[[KeyStore], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        redis = backends.from_settings(settings).client()  # standalone, Cluster or Sentinel alike
        try:
            return await fn(KeyStore(redis))
        finally:
            await redis.aclose()

    return asyncio.run(go())


def _when(ms: int) -> str:
    return iso(ms)[:19].replace("T", " ") if ms else "-"


def _row(k: KeyInfo, now: int) -> list[str]:
    shown = (k.prefix + "…") if k.prefix else "(legacy)"
    return [k.key_id, shown, k.name or "-", k.scope, ",".join(k.namespaces) or "-", k.status(now),
            _when(k.created_ms), _when(k.last_used_ms), _when(k.expires_ms)]


def _table(rows: list[list[str]]) -> str:
    head = ["ID", "KEY", "NAME", "SCOPE", "NAMESPACES", "STATUS", "CREATED", "LAST USED", "EXPIRES"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows])


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    secret, info = _run(settings, lambda s: s.create(args.namespace, name=args.name, scope=args.scope,
                                                       expires_ms=args.expires or 0))
    print(secret)
    print(f"# {info.key_id} ({info.scope}) for namespace {args.namespace}"
          + (f", expires {iso(info.expires_ms)}" if info.expires_ms else "")
          + "; the key is stored only as a hash: keep it now", file=sys.stderr)
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    keys: list[KeyInfo] = _run(settings, lambda s: s.all())
    now = now_ms()
    shown = [k for k in keys if args.all or k.status(now) == "active"]
    if args.namespace:
        shown = [k for k in shown if args.namespace in k.namespaces]
    print(_table([_row(k, now) for k in shown]))
    hidden = len(keys) - len(shown)
    if hidden and not args.all:
        print(f"# {hidden} more (revoked, expired or in other namespaces): --all", file=sys.stderr)
    return 0


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    try:
        info: KeyInfo = _run(settings, lambda s: s.revoke(args.key_id))
    except KeyNotFound:
        print(f"agentstream: no key with id {args.key_id} (see `agentstream keys list --all`)", file=sys.stderr)
        return 1
    print(f"revoked {info.key_id} ({info.prefix or 'legacy'}…) at {iso(info.revoked_ms)}; "
          "open streams with it end within seconds")
    return 0


def cmd_rotate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        secret, new, old = _run(settings, lambda s: s.rotate(args.key_id, args.grace))
    except KeyNotFound:
        print(f"agentstream: no key with id {args.key_id} (see `agentstream keys list --all`)", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"agentstream: {exc}", file=sys.stderr)
        return 1
    print(secret)
    print(f"# new key {new.key_id} replaces {old.key_id}, which stays valid until {iso(old.expires_ms)}; "
          "the new key is stored only as a hash: keep it now", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys: create, list, revoke, rotate").add_subparsers(
        dest="keys_command", required=True)
    kc = keys.add_parser("create", help="print a new API key for a namespace (stored only as a hash)")
    kc.add_argument("--namespace", required=True)
    kc.add_argument("--name", default="", help="a label shown by `keys list`")
    kc.add_argument("--scope", choices=SCOPES, default="full",
                    help="full (default), or read: list, get and stream only")
    kc.add_argument("--expires", type=parse_expiry_ms, default=None, metavar="WHEN",
                    help="a duration (30d, 12h) or an ISO 8601 time; default: never")
    kc.set_defaults(fn=cmd_create)
    kl = keys.add_parser("list", help="list keys (id, prefix, name, scope, times; never the secret)")
    kl.add_argument("--all", action="store_true", help="include revoked and expired keys")
    kl.add_argument("--namespace", default=None, help="only keys of this namespace (by name)")
    kl.set_defaults(fn=cmd_list)
    kr = keys.add_parser("revoke", help="revoke a key now, everywhere (open streams end within seconds)")
    kr.add_argument("key_id")
    kr.set_defaults(fn=cmd_revoke)
    ko = keys.add_parser("rotate", help="print a new key replacing KEY_ID; the old one stays valid for --grace")
    ko.add_argument("key_id")
    ko.add_argument("--grace", type=parse_duration_ms, default=parse_duration_ms("1h"), metavar="DURATION",
                    help="how long the old key stays valid (default 1h)")
    ko.set_defaults(fn=cmd_rotate)
