"""The job-pickup baseline: the project's worker (same jobs, same startup), run by arq's own
``Worker`` loop with its default ``poll_delay`` of 0.5 s and no inbound-stream wake-up.

No hook in ``worker/main.py`` is needed: ``build()`` names the class through the module, so the
class is swapped for arq's before ``run()`` builds it.

Run: ``python -m bench.baselines.poll_worker`` with the worker's ``AGENTSTREAM_*`` settings.
"""

from __future__ import annotations

from typing import Any

from arq.worker import Worker as ArqWorker

from shared.settings import Settings
from worker import main as worker_main


class DefaultPollWorker(ArqWorker):
    def __init__(self, *args: Any, fallback_poll_s: float = 0.5, backend: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # arq's default poll_delay (0.5 s)


if __name__ == "__main__":
    worker_main.Worker = DefaultPollWorker  # type: ignore[misc,assignment]
    worker_main.run(Settings.from_env())
