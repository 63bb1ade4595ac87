"""Every Lua script stays single-slot: each key it touches comes from KEYS (never built inside
the script), and the stores pass KEYS of one session, which a real cluster accepts."""

from __future__ import annotations

import re

from shared import keys, scripts
from shared.stores import confirmations

SCRIPTS = {name: getattr(scripts, name) for name in dir(scripts) if name.isupper()
           and isinstance(getattr(scripts, name), str)}
SCRIPTS["confirmations.ANSWER"] = confirmations.ANSWER


def test_every_script_takes_its_keys_from_KEYS_only():
    for name, body in SCRIPTS.items():
        # Each redis.call's first argument (the key, or the channel of a publish) is a local
        # bound from KEYS or an ARGV slot that the store fills with a session-tagged name.
        for command, target in re.findall(r"redis\.call\('([A-Z]+)',\s*([^,)]+)", body):
            assert not target.strip().startswith(("'", '"', "..")), (name, command, target)


def test_session_keys_of_one_session_share_one_slot(redis_cluster):
    node = redis_cluster.node(redis_cluster.live_primary())
    ses, msg = "ses_abc", "msg_def"
    names = [keys.session(ses), keys.session_log(ses), keys.message(ses, msg), keys.events(ses, msg),
             keys.live_channel(ses, msg), keys.idempotency(ses, "h"), keys.session_rate(ses),
             keys.confirmation(ses, "c"), keys.session_memory(ses)]
    assert len({node.cluster("keyslot", n) for n in names}) == 1
