"""Envelope encoding and validation for the bridge protocol (docs/protocol.md, version 1).

Every ZeroMQ message on the DEALER side is one frame: a MessagePack map
{v, type, sid, seq, body}. decode() validates the envelope and the required body fields of the
message type and raises ProtocolError with a message naming what was wrong.
"""
from typing import Any, Dict, Optional

import msgpack

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20

HELLO, WELCOME, REJECT, READY = "hello", "welcome", "reject", "ready"
TRAIN, STEP, LR, TRAINED = "train", "step", "lr", "trained"
EVAL, EVALUATED, SAVE, SAVED = "eval", "evaluated", "save", "saved"
SHUTDOWN, BYE, ERROR = "shutdown", "bye", "error"
HEARTBEAT, HEARTBEAT_ACK = "heartbeat", "heartbeat_ack"
PROGRESS = "progress"  # worker -> controller: how far loading data or evaluating is
PLAN = "plan"  # controller -> client: the answer to a client's ready (docs/protocol.md, "Client sessions")

ROLE_WORKER, ROLE_CLIENT = "worker", "client"  # hello.role: a managed worker, or a user's own script

# Required body fields per type. Specs: int, number (int or float), numbers (a number or a list of
# numbers), bool, str, map, list;
# a leading "?" also allows null. Extra body fields are ignored.
SCHEMAS: Dict[str, Dict[str, str]] = {
    HELLO: {"protocol": "int", "rank": "int", "world_size": "int", "pid": "int", "hostname": "str",
            "device": "str", "device_name": "str", "torch_version": "str",
            "python_version": "str", "trqat_version": "str"},
    WELCOME: {"config": "map", "resume": "?str"},
    REJECT: {"reason": "str"},
    READY: {"device": "str", "layers": "list", "params": "map", "train_size": "int",
            "test_size": "int", "steps_per_epoch": "int", "start_step": "int"},
    TRAIN: {"start": "int", "end": "int"},
    STEP: {"step": "int", "counts": "?list", "loss": "?number", "correct": "?int", "samples": "?int"},
    LR: {"step": "int", "lr_quant": "numbers", "lr_other": "number", "stop": "bool"},
    TRAINED: {"end": "int", "loss": "?number", "correct": "?int", "samples": "?int", "seconds": "number"},
    EVAL: {},
    EVALUATED: {"top1": "number", "loss": "number", "samples": "int", "seconds": "number"},
    SAVE: {"path": "str"},
    SAVED: {"path": "str", "bytes": "int"},
    SHUTDOWN: {},
    BYE: {},
    ERROR: {"message": "str"},  # `traceback` (str) is optional
    HEARTBEAT: {},
    HEARTBEAT_ACK: {},
    PROGRESS: {"phase": "str", "done": "int", "total": "?int"},
    PLAN: {"total_steps": "int", "steps_per_epoch": "int", "start_step": "int"},
}
# Optional body fields (client sessions): checked when present, same specs as SCHEMAS.
OPTIONAL: Dict[str, Dict[str, str]] = {
    HELLO: {"role": "str"},
    READY: {"total_steps": "?int", "controller_state": "?map"},
    STEP: {"dist": "map"},  # every train.diagnostics_every steps: {"hist", "mean"} (trqat.diagnostics)
    LR: {"state": "?map", "k": "?number", "K": "number", "R": "?number", "U": "?number"},
    BYE: {"loss": "?number", "correct": "?int", "samples": "?int", "error": "?str"},
}
CONTROLLER_STATE = {"K": "number", "U": "number", "last_step": "int"}
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
    if msg["type"] == HELLO and body.get("role", ROLE_WORKER) not in (ROLE_WORKER, ROLE_CLIENT):
        raise ProtocolError(f"message field 'body.role' must be {ROLE_WORKER!r} or {ROLE_CLIENT!r}, got {body['role']!r}")
    if msg["type"] == ERROR and not _matches(body.get("traceback", ""), "?str"):
        raise ProtocolError(f"message field 'body.traceback' must be str, got {_type_name(body['traceback'])}")
    for key in ("controller_state", "state"):
        if key in optional and isinstance(body.get(key), dict):
            _check_fields(body[key], CONTROLLER_STATE, f"body.{key}.")
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
