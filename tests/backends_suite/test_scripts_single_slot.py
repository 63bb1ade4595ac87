"""Every Lua script stays single-slot: each key it touches comes from KEYS (never built inside
the script), and the stores pass KEYS of one session, which a real cluster accepts."""

from __future__ import annotations

import re

from shared import keys, scripts
from shared.settings import Settings
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


# Scripts that touch arq's keys run where arq's queue lives: the queue Redis on a cluster (a
# plain server, where slots do not apply), the data Redis elsewhere. RESTART_UNCLAIMED runs only
# when the two are one server; on a cluster the reaper runs UNCLAIMED_PAST_GRACE and then
# deletes arq's key on the queue Redis (worker/reaper.py).
ON_THE_QUEUE = {"ENQUEUE", "START_JOBS"}
QUEUE_SHARED_ONLY = {"RESTART_UNCLAIMED"}


def test_every_script_on_the_data_cluster_gets_the_keys_of_one_slot(redis_cluster):
    """The stores' own KEYS builders, hashed by a real node: one slot per call."""
    from shared.stores.jobs import enqueue_args
    from shared.stores.messages import append_args

    node = redis_cluster.node(redis_cluster.live_primary())
    s = Settings()
    append_keys, _ = append_args(s, "ses_abc", "msg_def", 1, [("token", b"{}")])
    assert len({node.cluster("keyslot", k) for k in append_keys}) == 1
    queue_keys, _ = enqueue_args(s, "ses_abc", "msg_def")
    assert all(k.startswith(("arq:", keys.QUEUE, keys.INBOUND)) for k in queue_keys)  # nothing of the session's
    data_scripts = set(SCRIPTS) - ON_THE_QUEUE - QUEUE_SHARED_ONLY
    assert {"APPEND", "APPEND_SHARDED", "ACCEPT", "ACCEPT_SHARDED", "CLAIM", "RENEW", "RELEASE", "COMPACT",
            "UNCLAIMED_PAST_GRACE"} <= data_scripts
