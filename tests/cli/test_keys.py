"""``agentstream keys``: create, list, revoke, rotate, against a real (embedded) Redis; and
``make run`` no longer leaves every earlier key valid."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator

import pytest

from cli import keys as keys_cli
from cli.main import _dev_prepare, main
from shared.ids import now_ms
from shared.stores.apikeys import KeyStore
from shared.stores.tenancy import TenantStore
from tests.stack import Stack


@pytest.fixture(scope="module")
def rstack() -> Iterator[Stack]:
    s = Stack()
    s.start_redis()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def cli(rstack, monkeypatch, capsys):
    for name in [n for n in __import__("os").environ if n.startswith("AGENTSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AGENTSTREAM_REDIS_URL", rstack.redis_url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def authenticate(s: Stack, key: str):  # type: ignore[no-untyped-def]
    return s.redis_call(lambda r: TenantStore(r).authenticate(key))


def test_create_list_revoke(cli, rstack):
    ns = f"cli-{time.time_ns()}"
    code, out, err = cli("keys", "create", "--namespace", ns, "--name", "dashboards", "--scope", "read",
                         "--expires", "30d")
    assert code == 0
    key = out.strip()
    assert key.startswith("sk_") and "stored only as a hash" in err
    principal = authenticate(rstack, key)
    assert principal.scope == "read" and principal.expires_ms > now_ms() + 29 * 86_400_000
    code, out, _ = cli("keys", "list", "--namespace", ns)
    assert code == 0 and key not in out
    (row,) = [line for line in out.splitlines() if principal.key_id in line]
    assert key[:7] + "…" in row and "dashboards" in row and " read " in row and "active" in row
    code, out, _ = cli("keys", "revoke", principal.key_id)
    assert code == 0 and "revoked" in out
    assert principal.key_id not in cli("keys", "list", "--namespace", ns)[1]
    row = [line for line in cli("keys", "list", "--all", "--namespace", ns)[1].splitlines() if principal.key_id in line]
    assert row and "revoked" in row[0]
    with pytest.raises(Exception) as exc:
        authenticate(rstack, key)
    assert getattr(exc.value, "code", None) == "key_revoked"
    assert cli("keys", "revoke", "key_doesnotexist")[0] == 1


def test_rotate_prints_a_new_key_and_keeps_the_old_for_the_grace(cli, rstack):
    ns = f"cli-{time.time_ns()}"
    old = cli("keys", "create", "--namespace", ns, "--name", "ci")[1].strip()
    old_id = authenticate(rstack, old).key_id
    code, out, err = cli("keys", "rotate", old_id, "--grace", "10m")
    assert code == 0
    new = out.strip()
    assert new.startswith("sk_") and new != old and "stays valid until" in err
    p_new, p_old = authenticate(rstack, new), authenticate(rstack, old)
    assert p_new.namespaces == p_old.namespaces and p_new.scope == p_old.scope
    assert now_ms() + 9 * 60_000 < p_old.expires_ms <= now_ms() + 10 * 60_000
    assert p_new.expires_ms == 0


def test_rotating_an_expiring_key_keeps_its_lifetime(cli, rstack):
    """A 30-day key is replaced by a 30-day key, not by one that never expires."""
    ns = f"cli-{time.time_ns()}"
    old = cli("keys", "create", "--namespace", ns, "--expires", "30d")[1].strip()
    before = authenticate(rstack, old)
    lifetime = before.expires_ms - now_ms()
    new = cli("keys", "rotate", before.key_id, "--grace", "1h")[1].strip()
    p_new = authenticate(rstack, new)
    assert lifetime - 60_000 < p_new.expires_ms - now_ms() <= lifetime + 60_000
    assert authenticate(rstack, old).expires_ms <= now_ms() + 3_600_000


def test_bad_arguments_are_refused_with_a_clear_message(cli, capsys):
    with pytest.raises(SystemExit):
        main(["keys", "create", "--namespace", "x", "--expires", "soon"])
    assert "expected a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["keys", "create", "--namespace", "x", "--scope", "admin"])
    with pytest.raises(argparse.ArgumentTypeError):
        keys_cli.parse_expiry_ms("2001-01-01")


def test_each_make_run_revokes_the_key_the_previous_one_printed(rstack):
    first, _, generated = asyncio.run(_dev_prepare(rstack.redis_url, None, "demo"))
    assert generated
    second, _, _ = asyncio.run(_dev_prepare(rstack.redis_url, None, "demo"))
    assert authenticate(rstack, second).scope == "full"
    with pytest.raises(Exception) as exc:
        authenticate(rstack, first)
    assert getattr(exc.value, "code", None) == "key_revoked"
    listed = rstack.redis_call(lambda r: KeyStore(r).all())
    assert [k.name for k in listed if k.key_id == authenticate(rstack, second).key_id] == ["make run"]
