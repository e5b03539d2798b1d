import copy
import json
import os

import msgpack
import pytest

from trqat import protocol as P


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


LR = {"step": 7, "lr_quant": 0.1, "lr_other": 1, "stop": False, "eval": False, "save": None,
      "state": {"K": 0.0, "U": 0.1, "last_step": 7}, "k": None, "K": 0.0, "R": 1e-3, "U": 0.1}


def envelope(**overrides):
    msg = {"v": P.PROTOCOL_VERSION, "type": "lr", "sid": "ab12", "seq": 3, "body": dict(LR)}
    msg.update(overrides)
    return msg


def test_round_trip():
    body = {"step": 4, "counts": [1, 0, 5], "last": {"loss": 2.5, "correct": 3, "samples": 16}}
    msg = P.decode(P.encode(P.STEP, "deadbeef", 9, body))
    assert msg == {"v": P.PROTOCOL_VERSION, "type": "step", "sid": "deadbeef", "seq": 9, "body": body}
    assert P.decode(P.encode(P.BYE, "x", 0))["body"] == {}
    nulls = {"step": 0, "counts": None, "last": None}
    assert P.decode(P.encode(P.STEP, "x", 1, nulls))["body"] == nulls


def test_extra_body_fields_are_ignored():
    msg = envelope(body={**LR, "future": "x"})
    assert P.decode(pack(msg))["body"]["future"] == "x"


@pytest.mark.parametrize("frame, message", [
    (b"\xc1", "frame is not valid MessagePack"),
    (pack([1, 2]), "message must be map, got list"),
    (pack({k: v for k, v in envelope().items() if k != "seq"}), "message field 'seq' is missing"),
    (pack(envelope(v="1")), "message field 'v' must be int, got str"),
    (pack(envelope(v=1)), f"unsupported protocol version v=1 (expected {P.PROTOCOL_VERSION})"),
    (pack(envelope(type="launch")), "unknown message type 'launch'"),
    (pack(envelope(sid=5)), "message field 'sid' must be str, got int"),
    (pack(envelope(seq=True)), "message field 'seq' must be int, got bool"),
    (pack(envelope(seq=-1)), "message field 'seq' must be >= 0, got -1"),
    (pack(envelope(body=[])), "message field 'body' must be map, got list"),
    (pack(envelope(body={**LR, "step": "7"})), "message field 'body.step' must be int, got str"),
    (pack(envelope(body={k: v for k, v in LR.items() if k != "lr_quant"})), "message field 'body.lr_quant' is missing"),
    (pack(envelope(body={**LR, "lr_quant": None})), "message field 'body.lr_quant' must be number or list of numbers, got null"),
    (pack(envelope(body={**LR, "state": {"K": 0.0}})), "message field 'body.state.U' is missing"),
    (pack(envelope(type="step", body={"step": 1, "counts": None, "last": {"loss": "x", "correct": 1, "samples": 2}})),
     "message field 'body.last.loss' must be number or null, got str"),
    (pack(envelope(type="error", body={"message": "x", "kind": "fatal"})), "message field 'body.kind' must be one of config, runtime"),
    (pack(envelope(type="welcome", body={"config": {}, "resume": 3})), "message field 'body.resume' must be str or null, got int"),
    (pack(envelope(type="error", body={"message": "x", "traceback": 1})), "message field 'body.traceback' must be str, got int"),
    (pack({1: 2}), "frame is not valid MessagePack"),
    (b"\x00" * (P.MAX_MESSAGE_BYTES + 1), "over the 1048576 byte limit"),
])
def test_validation_errors(frame, message):
    with pytest.raises(P.ProtocolError) as e:
        P.decode(frame)
    assert message in str(e.value)


def test_hello_with_other_version_can_be_read_for_reject():
    frame = pack(envelope(v=1, type="hello", body={}))
    with pytest.raises(P.ProtocolError, match="'body.protocol' is missing"):
        P.decode(frame, check_version=False)


def test_encode_validates_and_limits_size():
    with pytest.raises(P.ProtocolError, match="'body.path' is missing"):
        P.encode(P.SAVED, "x", 0, {"bytes": 3})
    with pytest.raises(P.ProtocolError, match="byte limit"):
        P.encode(P.ERROR, "x", 0, {"message": "m" * P.MAX_MESSAGE_BYTES})


# --- the examples shared with the controller's zod schemas (test/bridge/protocol-contract.test.ts) ------------
with open(os.path.join(os.path.dirname(__file__), "..", "..", "test", "support", "fixtures", "protocol-messages.json")) as _f:
    SHARED = json.load(_f)
SENDERS = ("session", "controller")
CASES = [(sender, type_, examples) for sender in SENDERS for type_, examples in SHARED[sender].items()]


def _verdict(type_, body, sender=None):
    """None when the checker accepts the body (in an envelope), else its message."""
    try:
        P.validate({"v": P.PROTOCOL_VERSION, "type": type_, "sid": "abc123", "seq": 1, "body": copy.deepcopy(body)}, sender=sender)
        return None
    except P.ProtocolError as e:
        return str(e)


def _wrong_type(value):
    """A value of another type than `value`'s (and than null's), as the TypeScript half picks it."""
    return 12345 if isinstance(value, str) else "x" if isinstance(value, bool) else True


def test_the_shared_examples_cover_every_message_type():
    assert {t for sender in SENDERS for t in SHARED[sender]} == set(P.TYPES)
    assert all(set(SHARED[s]) == set(P.SCHEMA[s]) for s in SENDERS)


@pytest.mark.parametrize("sender, type_, examples", CASES, ids=[f"{s}-{t}" for s, t, _ in CASES])
def test_shared_examples_are_accepted_and_broken_variants_refused(sender, type_, examples):
    minimal, full = examples["minimal"], examples.get("full", examples["minimal"])
    for body in [minimal, full, *examples.get("more", [])]:
        assert _verdict(type_, body, sender) is None and _verdict(type_, body) is None, body
    for key in minimal:
        assert _verdict(type_, {k: v for k, v in minimal.items() if k != key}, sender) is not None, f"without {key}"
    for key, value in full.items():
        assert _verdict(type_, {**full, key: _wrong_type(value)}, sender) is not None, f"{key}: {_wrong_type(value)!r}"


def test_the_shared_examples_name_exactly_the_checkers_fields():
    """Required fields: those of the 'minimal' example; all fields: those of the 'full' one (per sender)."""
    for sender in SENDERS:
        for type_, e in SHARED[sender].items():
            schema = P.SCHEMA[sender][type_]
            assert set(e["minimal"]) == set(schema.get("required", [])), (sender, type_)
            assert set(e.get("full", e["minimal"])) == set(schema.get("properties", {})), (sender, type_)


@pytest.mark.parametrize("case", SHARED["broken"], ids=[c["why"] for c in SHARED["broken"]])
def test_shared_broken_messages_are_refused(case):
    assert _verdict(case["type"], case["body"]) is not None


@pytest.mark.parametrize("case", SHARED["broken_envelopes"], ids=[c["why"] for c in SHARED["broken_envelopes"]])
def test_shared_broken_envelopes_are_refused(case):
    with pytest.raises(P.ProtocolError):
        P.validate(case["envelope"])
