"""Envelope encoding and validation for the bridge protocol (docs/protocol.md, version 2).

Every ZeroMQ message on the DEALER side is one frame: a MessagePack map
{v, type, sid, seq, body}. decode() validates the envelope and the body of the message type and
raises ProtocolError with a message naming the message type and the field that was wrong.

The checks are the controller's own: protocol.schema.json is generated from its zod schemas
(src/bridge/protocol.ts; `npm run protocol:schema`, test/bridge/protocol-schema.test.ts fails when it is stale)
and checked here by json_schema.py. A new message type is one edit there, plus its handlers.
"""
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import msgpack

from . import json_schema

with open(os.path.join(os.path.dirname(__file__), "protocol.schema.json"), encoding="utf-8") as _f:
    SCHEMA: Dict[str, Any] = json.load(_f)
json_schema.check_keywords(SCHEMA["envelope"], "envelope")
for _sender in ("session", "controller"):
    for _type, _body in SCHEMA[_sender].items():
        json_schema.check_keywords(_body, f"{_sender} {_type}")

PROTOCOL_VERSION: int = SCHEMA["protocol_version"]
EXPORT_FORMATS: List[str] = SCHEMA["export_formats"]  # `trqat export --format` (src/config/export-formats.ts)
MAX_MESSAGE_BYTES: int = SCHEMA["max_message_bytes"]
SENDERS = ("session", "controller")  # who sends a message: a session (worker or client), or the controller
TYPES: Tuple[str, ...] = tuple(sorted(set(SCHEMA["session"]) | set(SCHEMA["controller"])))

HELLO, ATTACH, WELCOME, REJECT, READY, PLAN = "hello", "attach", "welcome", "reject", "ready", "plan"
STEP, LR, EVALUATED, SAVED = "step", "lr", "evaluated", "saved"
BYE, ERROR, ABORT = "bye", "error", "abort"
HEARTBEAT, HEARTBEAT_ACK = "heartbeat", "heartbeat_ack"
PROGRESS = "progress"  # session -> controller: how far loading data or evaluating is

ROLE_WORKER, ROLE_CLIENT = "worker", "client"  # hello.role: a managed worker, or a user's own script


def body_schemas(type: str, sender: Optional[str] = None) -> List[Dict[str, Any]]:
    """The body schemas of a message type: the sender's, or (sender None) those of every sender of it."""
    senders = SENDERS if sender is None else (sender,)
    return [SCHEMA[s][type] for s in senders if type in SCHEMA[s]]


def fields(type: str) -> List[str]:
    """Every body field a message type may have, for any sender."""
    return sorted({k for schema in body_schemas(type) for k in schema.get("properties", {})})


class ProtocolError(ValueError):
    """A frame that does not decode, or an envelope/body that fails validation."""


def _where(error: json_schema.SchemaError) -> str:
    text = str(error)
    return f"message {text}" if text.startswith("field") else text


def validate(msg: Any, check_version: bool = True, sender: Optional[str] = None) -> Dict[str, Any]:
    """Check an envelope and its body; return it. `sender` ("session" or "controller") picks the
    schema of a type both send (error, bye); None checks against every sender's. check_version=False
    lets a hello with another version through so its receiver can reject it by name."""
    try:
        json_schema.validate(msg, SCHEMA["envelope"])
    except json_schema.SchemaError as e:
        raise ProtocolError(_where(e)) from None
    type_ = msg["type"]
    version = msg["v"] if msg["v"] != PROTOCOL_VERSION or type_ != HELLO else msg["body"].get("protocol", PROTOCOL_VERSION)
    if check_version and version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version v={version} (expected {PROTOCOL_VERSION})")
    schemas = body_schemas(type_, sender)
    if not schemas:
        known = sorted(SCHEMA[sender]) if sender else TYPES
        raise ProtocolError(f"unknown message type {type_!r} (known: {', '.join(known)})")
    try:
        for schema in schemas:
            json_schema.validate(msg["body"], schema, "body")
    except json_schema.SchemaError as e:
        raise ProtocolError(f"{type_!r} {_where(e)}") from None
    return msg


def encode(type: str, sid: str, seq: int, body: Optional[Dict[str, Any]] = None, sender: Optional[str] = None) -> bytes:
    """Build, validate and pack one envelope."""
    msg = validate({"v": PROTOCOL_VERSION, "type": type, "sid": sid, "seq": seq, "body": body or {}}, sender=sender)
    frame = msgpack.packb(msg, use_bin_type=True)
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{type} message is {len(frame)} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
    return frame


def decode(frame: bytes, check_version: bool = True, sender: Optional[str] = None) -> Dict[str, Any]:
    """Unpack and validate one frame; raise ProtocolError naming what was wrong."""
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message is {len(frame)} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
    try:
        msg = msgpack.unpackb(frame, raw=False)
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, UnicodeDecodeError, ...)
        raise ProtocolError(f"frame is not valid MessagePack ({type(e).__name__}: {e})") from None
    return validate(msg, check_version, sender)
