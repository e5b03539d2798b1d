"""Envelope encoding and validation for the bridge protocol (docs/protocol.md, version 2).

Every ZeroMQ message on the DEALER side is one frame: a MessagePack map
{v, type, sid, seq, body}. decode() validates the envelope and the required body fields of the
message type and raises ProtocolError with a message naming what was wrong.
"""
from typing import Any, Dict, Optional

import msgpack

PROTOCOL_VERSION = 2
MAX_MESSAGE_BYTES = 1 << 20

HELLO, ATTACH, WELCOME, REJECT, READY, PLAN = "hello", "attach", "welcome", "reject", "ready", "plan"
STEP, LR, EVALUATED, SAVED = "step", "lr", "evaluated", "saved"
BYE, ERROR, ABORT = "bye", "error", "abort"
HEARTBEAT, HEARTBEAT_ACK = "heartbeat", "heartbeat_ack"
PROGRESS = "progress"  # session -> controller: how far loading data or evaluating is

ROLE_WORKER, ROLE_CLIENT = "worker", "client"  # hello.role: a managed worker, or a user's own script
ERROR_KINDS = ("config", "runtime", "checkpoint")  # error.kind: "config" ends the run as a config error (exit 2);
# "checkpoint": the checkpoint to resume from cannot be used (the controller falls back to an earlier one)

# The controller's zod schemas (src/bridge/protocol.ts) describe the same messages: both must accept the
# shared examples in test/fixtures/protocol-messages.json and know the same fields (python/tests/test_protocol.py).
# Required body fields per type. Specs: int, number (int or float), numbers (a number or a list of
# numbers), bool, str, map, list; a leading "?" also allows null. Extra body fields are ignored.
SCHEMAS: Dict[str, Dict[str, str]] = {
    HELLO: {"protocol": "int", "role": "str", "rank": "int", "world_size": "int", "pid": "int", "hostname": "str",
            "device": "str", "device_name": "str", "torch_version": "str",
            "python_version": "str", "trqat_version": "str", "secret": "str"},
    ATTACH: {"secret": "str"},
    WELCOME: {"config": "map", "resume": "?str"},
    REJECT: {"reason": "str"},
    READY: {"device": "str", "layers": "list", "params": "map", "train_size": "int",
            "test_size": "int", "steps_per_epoch": "int", "start_step": "int"},
    PLAN: {"total_steps": "int", "steps_per_epoch": "int", "start_step": "int"},
    STEP: {"step": "int", "counts": "?list", "last": "?map"},
    LR: {"step": "int", "lr_quant": "numbers", "lr_other": "number", "stop": "bool", "eval": "bool",
         "save": "?str", "state": "map", "k": "?number", "K": "number", "R": "?number", "U": "?number"},
    EVALUATED: {"top1": "number", "loss": "number", "samples": "int", "seconds": "number"},
    SAVED: {"path": "str", "bytes": "int"},
    BYE: {},
    ERROR: {"message": "str"},
    ABORT: {"reason": "str"},
    HEARTBEAT: {},
    HEARTBEAT_ACK: {},
    PROGRESS: {"phase": "str", "done": "int", "total": "?int"},
}
# Optional body fields: checked when present, same specs as SCHEMAS.
OPTIONAL: Dict[str, Dict[str, str]] = {
    HELLO: {"local_rank": "int"},
    READY: {"total_steps": "?int", "controller_state": "?map"},
    STEP: {"dist": "map"},  # every train.diagnostics_every steps: {"hist", "mean"} (trqat.diagnostics)
    EVALUATED: {"last": "?map"},
    SAVED: {"last": "?map"},
    BYE: {"last": "?map", "error": "?str"},
    ERROR: {"traceback": "str", "kind": "str"},
}
# Sub-maps: the controller's state, and the statistics of a session's last step.
SUBSCHEMAS: Dict[str, Dict[str, str]] = {
    "controller_state": {"K": "number", "U": "number", "last_step": "int"},
    "state": {"K": "number", "U": "number", "last_step": "int"},
    "last": {"loss": "?number", "correct": "?int", "samples": "?int"},
}
ENVELOPE = {"v": "int", "type": "str", "sid": "str", "seq": "int", "body": "map"}


class ProtocolError(ValueError):
    """A frame that does not decode, or an envelope/body that fails validation."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", dict: "map", list: "list"}.get(type(value), type(value).__name__)


def _matches(value: Any, spec: str) -> bool:
    if value is None:
        return spec.startswith("?")
    base = spec.lstrip("?")
    if base == "bool" or isinstance(value, bool):  # bool is an int subclass in Python, not on the wire
        return base == "bool" and isinstance(value, bool)
    if base == "number":
        return isinstance(value, (int, float))
    if base == "numbers":
        items = value if isinstance(value, list) else [value]
        return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items)
    return isinstance(value, {"int": int, "str": str, "map": dict, "list": list}[base])


def _check_fields(obj: Dict[str, Any], schema: Dict[str, str], prefix: str) -> None:
    for key, spec in schema.items():
        if key not in obj:
            raise ProtocolError(f"message field '{prefix}{key}' is missing")
        if not _matches(obj[key], spec):
            want = {"numbers": "number or list of numbers"}.get(spec.lstrip("?"), spec.lstrip("?"))
            want += " or null" if spec.startswith("?") else ""
            raise ProtocolError(f"message field '{prefix}{key}' must be {want}, got {_type_name(obj[key])}")


def validate(msg: Any, check_version: bool = True) -> Dict[str, Any]:
    """Check an envelope and its body; return it. check_version=False lets a hello with another v
    through so its receiver can reject it by name."""
    if not isinstance(msg, dict):
        raise ProtocolError(f"message must be a map, got {_type_name(msg)}")
    _check_fields(msg, ENVELOPE, "")
    if check_version and msg["v"] != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version v={msg['v']} (expected {PROTOCOL_VERSION})")
    if msg["type"] not in SCHEMAS:
        raise ProtocolError(f"unknown message type {msg['type']!r}")
    if msg["seq"] < 0:
        raise ProtocolError(f"message field 'seq' must be >= 0, got {msg['seq']}")
    body = msg["body"]
    _check_fields(body, SCHEMAS[msg["type"]], "body.")
    optional = OPTIONAL.get(msg["type"], {})
    _check_fields(body, {k: v for k, v in optional.items() if k in body}, "body.")
    if msg["type"] == HELLO and body["role"] not in (ROLE_WORKER, ROLE_CLIENT):
        raise ProtocolError(f"message field 'body.role' must be {ROLE_WORKER!r} or {ROLE_CLIENT!r}, got {body['role']!r}")
    if msg["type"] == ERROR and body.get("kind", "runtime") not in ERROR_KINDS:
        raise ProtocolError(f"message field 'body.kind' must be one of {', '.join(ERROR_KINDS)}, got {body['kind']!r}")
    for key, schema in SUBSCHEMAS.items():
        if isinstance(body.get(key), dict):
            _check_fields(body[key], schema, f"body.{key}.")
    return msg


def encode(type: str, sid: str, seq: int, body: Optional[Dict[str, Any]] = None) -> bytes:
    """Build, validate and pack one envelope."""
    msg = validate({"v": PROTOCOL_VERSION, "type": type, "sid": sid, "seq": seq, "body": body or {}})
    frame = msgpack.packb(msg, use_bin_type=True)
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{type} message is {len(frame)} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
    return frame


def decode(frame: bytes, check_version: bool = True) -> Dict[str, Any]:
    """Unpack and validate one frame; raise ProtocolError naming what was wrong."""
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message is {len(frame)} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
    try:
        msg = msgpack.unpackb(frame, raw=False)
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, UnicodeDecodeError, ...)
        raise ProtocolError(f"frame is not valid MessagePack ({type(e).__name__}: {e})") from None
    return validate(msg, check_version)
