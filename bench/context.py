"""What every scenario gets: the cluster, a Redis client, fixtures, a tenant, and the counts."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from bench.fixtures import Fixtures, Tenant
from bench.procs import Cluster
from shared.settings import Settings

TARGETS = ("project", "naive", "ceiling")


@dataclass(frozen=True)
class Counts:
    ttfe_warmup: int = 3  # messages sent before measuring (first requests pay imports, script loads)
    ttfe_samples: int = 200  # idle TTFE, one message at a time
    ttfe_poll_samples: int = 60  # the same against arq's 0.5 s poll (each takes ~0.3 s)
    ttfe_senders: int = 50
    ttfe_loaded_s: float = 10.0
    ttfe_gap_s: tuple[float, float] = (0.02, 0.1)  # random pause between idle samples
    streams: int = 1000
    live_rates: tuple[int, ...] = (5000, 20000)
    live_s: float = 10.0
    drain_timeout_s: float = 20.0
    ramp_step_s: float = 3.0
    ramp_factor: float = 1.25
    ramp_max: int = 400_000
    ramp_refine: bool = True
    capacity_streams: int = 10_000
    replay_events: int = 10_000
    replay_repeats: int = 7
    idle_s: float = 10.0
    quiet_wait_s: float = 60.0  # before each measured window, wait this long at most for other load to stop


FULL = Counts()
QUICK = Counts(ttfe_warmup=1, ttfe_samples=40, ttfe_poll_samples=8, ttfe_loaded_s=2.0, ttfe_gap_s=(0.01, 0.04), live_s=2.0,
               drain_timeout_s=5.0, ramp_step_s=1.0, ramp_factor=1.5, ramp_refine=False, capacity_streams=1000,
               replay_repeats=3, idle_s=5.0, quiet_wait_s=0.5)

# A rate is "sustained" when the producer kept it, nothing was lost, everything arrived within
# this long after the producer stopped, and p99 latency stayed under the bound.
SUSTAIN_ACHIEVED = 0.97
SUSTAIN_DRAIN_S = 0.5
SUSTAIN_P99_MS = 250.0
# Other sessions may run their tests on the same machine: a window starts once processes that
# are not this run use less than this much of a core (or after quiet_wait_s), and every window
# reports what they used ("others_pct").
QUIET_PCT = 15.0


@dataclass
class Ctx:
    cluster: Cluster
    redis: aioredis.Redis
    settings: Settings
    fx: Fixtures
    tenant: Tenant
    counts: Counts
    quick: bool

    async def quiet(self) -> dict[str, float]:
        from bench.procs import quiet

        return await quiet(QUIET_PCT, self.counts.quiet_wait_s)
