"""Worker faults, bodies unchanged, on Cluster and Sentinel: a SIGKILLed worker's answer is
taken over and completes exactly; a cancel while running stops it with one terminal event; the
reaper's three repairs (a job that never reached the queue, a job that vanished, a job arq
started but no worker claimed: the one whose check and delete are two steps on a cluster).
(Standalone runs the same bodies in tests/faults/test_workers.py.)"""

from __future__ import annotations

import pytest

from tests.faults.test_workers import (  # noqa: F401 - collected here with this package's fixtures
    POISON,
    ctx,
    test_a_job_started_by_a_worker_that_died_before_claiming_is_restarted,
    test_a_message_whose_job_never_reached_the_queue_is_enqueued_by_the_reaper,
    test_a_running_message_whose_job_vanished_ends_with_job_lost,
    test_cancel_while_running_stops_promptly_with_one_terminal,
    test_sigkill_mid_answer_completes_on_another_worker_within_15s,
)

pytestmark = pytest.mark.faults
# Read by the package's ``stack`` fixture: the settings tests/faults/test_workers.py runs with.
STACK_ENV = {"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "40", "AGENTSTREAM_LEASE_S": "2",
             "AGENTSTREAM_REAPER_INTERVAL_S": "0.5", "AGENTSTREAM_WORKER_DRAIN_S": "1",
             "AGENTSTREAM_FAULT_CRASH_MARKER": POISON, "AGENTSTREAM_MAX_TRIES": "3"}
WORKERS = 2
