"""The client package keeps its own copy of the event union (it cannot import the server's
``shared``): both must have the same tags, fields, types and defaults."""

from __future__ import annotations

from typing import Any

import agentstream_client.events as client_events
import msgspec

import shared.events as server_events


def shape(t: Any) -> Any:
    """A comparable description of a msgspec type: nested structs by name and shape."""
    info = msgspec.inspect.type_info(t) if not isinstance(t, msgspec.inspect.Type) else t
    if isinstance(info, msgspec.inspect.StructType):
        cfg = info.cls.__struct_config__
        return ("struct", info.cls.__name__, cfg.tag_field, cfg.tag, cfg.frozen, cfg.omit_defaults,
                tuple((f.name, f.encode_name, f.required, repr(f.default),
                       f.default_factory() if f.default_factory is not msgspec.NODEFAULT else None,
                       shape(f.type)) for f in info.fields))
    if isinstance(info, msgspec.inspect.UnionType):
        return ("union", tuple(shape(x) for x in info.types))
    if isinstance(info, msgspec.inspect.DictType):
        return ("dict", shape(info.key_type), shape(info.value_type))
    if isinstance(info, msgspec.inspect.ListType):
        return ("list", shape(info.item_type))
    return type(info).__name__


def test_client_union_is_identical_to_the_servers():
    assert shape(client_events.AnyEvent) == shape(server_events.AnyEvent)
    assert client_events.TERMINAL == server_events.TERMINAL and client_events.PAUSE == server_events.PAUSE
    assert client_events.TAG_FIELD == server_events.TAG_FIELD


def test_each_event_round_trips_between_the_two_unions():
    for tag, cls in server_events.EVENT_TYPES.items():
        assert tag in client_events.EVENT_TYPES
        fields = {f.name: f for f in msgspec.structs.fields(cls)}
        assert set(fields) == {f.name for f in msgspec.structs.fields(client_events.EVENT_TYPES[tag])}


def test_a_server_payload_decodes_to_the_same_typed_event_in_the_client():
    ev = server_events.Reset(reason="retry", status="running", replay_from="1-0", attempt=2, discard_after="1-0")
    got = client_events.decode_event("reset", server_events.encode_payload(ev))
    assert type(got).__name__ == "Reset" and msgspec.structs.asdict(got) == msgspec.structs.asdict(ev)


def test_the_comparison_sees_a_changed_default_type_or_field():
    class A(msgspec.Struct, frozen=True, tag="x"):
        n: int = 0

    class B(msgspec.Struct, frozen=True, tag="x"):
        n: int = 1

    class C(msgspec.Struct, frozen=True, tag="x"):
        n: float = 0

    class D(msgspec.Struct, frozen=True, tag="x"):
        n: int = 0
        extra: str | None = None

    def unnamed(t: Any) -> Any:
        kind, _name, *rest = shape(t)
        return (kind, *rest)

    assert len({unnamed(A), unnamed(B), unnamed(C), unnamed(D)}) == 4
    assert unnamed(A) == unnamed(A)
