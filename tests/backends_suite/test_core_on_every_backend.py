"""The core message, resume and compaction tests, bodies unchanged, on Cluster and Sentinel (the
conftest's ``stack`` is parametrized; standalone runs the same bodies in
tests/gateway/test_messages.py and tests/gateway/test_compaction.py)."""

from __future__ import annotations

from shared import keys
from shared.settings import Settings
from shared.stores.messages import MessageStore, append_args
from tests.gateway.test_compaction import (  # noqa: F401 - compaction's script and packed reads
    test_compaction_is_idempotent_and_leaves_running_messages_alone,
    test_history_keeps_whole_tool_outputs_after_compaction,
    test_resume_inside_the_folded_tokens_resets_then_delivers_the_kept_events,
)
from tests.gateway.test_messages import (  # noqa: F401 - collected here with this package's fixtures
    test_cancel_after_the_end_is_a_no_op,
    test_cursor_ahead_of_the_stream_resets,
    test_cursor_older_than_retention_resets_then_delivers_the_rest,
    test_expired_stream_still_gives_the_final_message_and_terminal_event,
    test_idempotency_key_same_body_same_message_one_job,
    test_idempotency_key_with_a_different_body_is_409,
    test_non_streamed_answer,
    test_resume_from_every_cursor_is_exact,
    test_streamed_answer_is_complete_ordered_and_ends_once,
    test_tools_and_retriever_events,
)


def test_a_retried_append_batch_is_not_appended_twice(stack, api):
    """A client that retries an APPEND after a failover (the write went through, the reply was
    lost with the connection) must not append the batch twice: the batch token makes it a no-op."""
    sid = api.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
    mid = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": "hi", "stream": False}
                   ).headers["x-message-id"]

    async def go(redis):  # type: ignore[no-untyped-def]
        append = MessageStore(redis, Settings())._append  # the worker's script (SPUBLISH on a cluster)
        rec_keys, args = append_args(Settings(), sid, mid, "*", [("token", b'{"content":"x"}')], token="b_same")
        await redis.hdel(keys.message(sid, mid), "terminal_type")  # reopen it for the test
        before = await redis.xlen(keys.events(sid, mid))
        first = await append(keys=rec_keys, args=args)
        again = await append(keys=rec_keys, args=args)
        return before, first, again, await redis.xlen(keys.events(sid, mid))

    before, (ids, handed), again, after = stack.redis_call(go)
    assert len(ids) == 1 and again == [ids, handed]
    assert after == before + 1
