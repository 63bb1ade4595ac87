"""The Redis topology settings fail fast, naming the variable (shared/settings.py)."""

from __future__ import annotations

import pytest

from shared import backends
from shared.settings import Settings, SettingsError

NODES = "127.0.0.1:7000,127.0.0.1:7001"


@pytest.mark.parametrize("env,message", [
    ({"AGENTSTREAM_REDIS_CLUSTER_NODES": NODES}, "AGENTSTREAM_QUEUE_URL: required"),
    ({"AGENTSTREAM_REDIS_CLUSTER_NODES": "127.0.0.1", "AGENTSTREAM_QUEUE_URL": "redis://q"},
     "AGENTSTREAM_REDIS_CLUSTER_NODES: '127.0.0.1' is not host:port"),
    ({"AGENTSTREAM_REDIS_SENTINELS": "h:99999", "AGENTSTREAM_REDIS_SENTINEL_SERVICE": "m"},
     "AGENTSTREAM_REDIS_SENTINELS: 'h:99999' is not host:port"),
    ({"AGENTSTREAM_REDIS_SENTINELS": NODES}, "AGENTSTREAM_REDIS_SENTINEL_SERVICE: required"),
    ({"AGENTSTREAM_REDIS_SENTINEL_SERVICE": "m"}, "AGENTSTREAM_REDIS_SENTINEL_SERVICE: set only with"),
    ({"AGENTSTREAM_REDIS_URL": "redis://x", "AGENTSTREAM_REDIS_CLUSTER_NODES": NODES,
      "AGENTSTREAM_QUEUE_URL": "redis://q"}, "AGENTSTREAM_REDIS_URL and AGENTSTREAM_REDIS_CLUSTER_NODES"),
    ({"AGENTSTREAM_REDIS_CLUSTER_NODES": NODES, "AGENTSTREAM_REDIS_SENTINELS": NODES,
      "AGENTSTREAM_REDIS_SENTINEL_SERVICE": "m", "AGENTSTREAM_QUEUE_URL": "redis://q"},
     "AGENTSTREAM_REDIS_CLUSTER_NODES and AGENTSTREAM_REDIS_SENTINELS"),
    ({"AGENTSTREAM_QUEUE_URL": "redis://q"}, "AGENTSTREAM_QUEUE_URL: only used with"),
    ({"AGENTSTREAM_REDIS_CLUSTER_NODES": NODES, "AGENTSTREAM_QUEUE_URL": "http://q"},
     "AGENTSTREAM_QUEUE_URL: must start with"),
])
def test_bad_topology_is_refused_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_each_topology_picks_its_backend():
    cluster = backends.from_settings(Settings.from_env({"AGENTSTREAM_REDIS_CLUSTER_NODES": NODES,
                                                        "AGENTSTREAM_QUEUE_URL": "redis://q:6379"}))
    sentinel = backends.from_settings(Settings.from_env({"AGENTSTREAM_REDIS_SENTINELS": NODES,
                                                         "AGENTSTREAM_REDIS_SENTINEL_SERVICE": "m"}))
    standalone = backends.from_settings(Settings.from_env({"AGENTSTREAM_REDIS_URL": "redis://x:1"}))
    assert (cluster.name, cluster.sharded, cluster.queue_shared) == ("cluster", True, False)
    assert (sentinel.name, sentinel.sharded, sentinel.queue_shared) == ("sentinel", False, True)
    assert (standalone.name, standalone.sharded, standalone.queue_shared) == ("standalone", False, True)
