"""What the sessions survive: arbitrary frames on every receive path (hypothesis), and a full disk
under worker.pt (a real tmpfs in a user+mount namespace)."""
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from types import SimpleNamespace

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_controller import FakeController
from trqat import protocol as P
from trqat.distributed import Ranks
from trqat.transport import Credentials, Heartbeat, Sender, Session, TransportError
from trqat.worker import BadMessage, Worker

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)

# --- what a peer may send: anything -------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True), st.text(max_size=20),
                    st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
types = st.sampled_from(P.TYPES) | st.text(max_size=12)


def body_for(type_: str):
    """A body with the type's own fields holding anything, or nearly right values."""
    fields = P.fields(type_) if type_ in P.TYPES else []
    return st.fixed_dictionaries({k: values for k in fields}) | st.dictionaries(st.text(max_size=8), values, max_size=4)


envelopes = types.flatmap(lambda t: st.fixed_dictionaries({
    "v": st.sampled_from([P.PROTOCOL_VERSION, 1, 3]) | values, "type": st.just(t), "sid": st.text(max_size=8) | values,
    "seq": st.integers(-1, 2**40) | values, "body": body_for(t) | values}))
frames = st.one_of(st.binary(max_size=200), values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
                   envelopes.map(lambda v: msgpack.packb(v, use_bin_type=True)))


@FUZZ
@given(frames)
def test_decode_accepts_a_valid_message_or_raises_protocol_error(frame):
    for check_version in (True, False):
        try:
            msg = P.decode(frame, check_version)
        except P.ProtocolError as e:
            assert str(e)
            continue
        assert msg["type"] in P.TYPES and isinstance(msg["body"], dict)
        P.validate(msg, check_version)  # what decode accepts, validate accepts again


@FUZZ
@given(values)
def test_validate_raises_protocol_error_only(value):
    try:
        P.validate(value)
    except P.ProtocolError:
        pass


# --- the session's receive path ------------------------------------------------------------------
@pytest.fixture(scope="module")
def session():
    """One session (not started: no heartbeat thread) connected to a fake controller, sending raw frames."""
    peer = FakeController()
    s = Session(P.ROLE_WORKER, Ranks(0, 1, 0), Credentials(peer.endpoint, "secret"), heartbeat_s=1, timeout_s=60)
    s.sock.send(b"register")  # the ROUTER learns the DEALER's identity
    ident = peer.identity()
    yield SimpleNamespace(session=s, peer=peer, ident=ident)
    s.close()
    peer.close()


@FUZZ
@given(frames)
def test_the_session_receives_anything_as_a_message_or_a_transport_error(session, frame):
    session.peer.send_raw(frame, session.ident)
    try:
        msg = session.session.recv((P.LR, P.PLAN), timeout_s=5)
    except TransportError as e:  # Rejected, Gone, RunOver and bad messages alike: an error the caller can say
        assert "no trqat controller answered" not in str(e)  # every frame was read, none lost
        return
    assert msg["type"] in (P.LR, P.PLAN)


numbers = st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True, allow_infinity=True)


@FUZZ
@given(st.fixed_dictionaries({"lr_quant": numbers | st.lists(numbers, max_size=4), "lr_other": numbers}))
def test_the_worker_checks_every_lr_it_is_given(lr):
    """The worker's last check before setting LRs, on what validate() lets through: any numbers."""
    worker = SimpleNamespace(trainer=SimpleNamespace(layers=[("a", None), ("b", None)]))
    try:
        Worker.check_lrs(worker, lr)  # type: ignore[arg-type]
    except BadMessage:
        return
    values_ = (lr["lr_quant"] if isinstance(lr["lr_quant"], list) else [lr["lr_quant"]]) + [lr["lr_other"]]
    assert all(math.isfinite(v) and v >= 0 for v in values_)
    assert not isinstance(lr["lr_quant"], list) or len(lr["lr_quant"]) == 2


@pytest.fixture(scope="module")
def heartbeat():
    """A session's heartbeat thread, beating every 50 ms to a fake controller (which answers nothing)."""
    peer = FakeController()
    gone = []
    ctx = zmq.Context()
    beat = Heartbeat(ctx, Credentials(peer.endpoint, "secret"), Sender("abcd"), interval_s=0.05, timeout_s=30, on_gone=gone.append)
    beat.start()
    yield SimpleNamespace(beat=beat, peer=peer, ident=peer.identity(), gone=gone)
    beat.stop.set()
    beat.join()
    ctx.term()
    peer.close()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], derandomize=True, database=None)
@given(st.lists(frames.filter(lambda f: _type_of(f) != P.ABORT), min_size=1, max_size=30))
def test_the_heartbeat_thread_survives_any_frame(heartbeat, garbage):
    """Garbage on the heartbeat socket is dropped: the thread keeps beating, the session is not gone."""
    peer = heartbeat.peer
    for frame in garbage:
        peer.send_raw(frame, heartbeat.ident)
    time.sleep(0.06)
    peer.drain()
    got = peer.recv_frame(timeout=2.0)
    assert got is not None, "no heartbeat after the garbage"
    assert P.decode(got[1])["type"] == P.HEARTBEAT
    assert heartbeat.beat.is_alive() and heartbeat.gone == []


def _type_of(frame: bytes):
    try:
        return msgpack.unpackb(frame, raw=False).get("type")
    except Exception:
        return None


# --- a full disk under worker.pt -----------------------------------------------------------------
SAVE_ON_FULL_DISK = textwrap.dedent("""
    import os, sys, torch
    from trqat import safe_io
    folder = sys.argv[1]
    path = os.path.join(folder, "worker.pt")
    safe_io.save({"w": torch.zeros(10)}, path)  # the previous checkpoint
    try:
        safe_io.save({"w": torch.zeros(1 << 20)}, path)  # 4 MiB on a 1 MiB disk
    except safe_io.WriteError as e:
        print("error:", e)
    print("left:", sorted(os.listdir(folder)))
    print("old:", safe_io.load(path)["w"].shape[0])
""")


def _unshare_unavailable():
    if shutil.which("unshare") is None:
        return "no unshare"
    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {d}"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a user+mount namespace here ({probe.stderr.strip()})"


@pytest.mark.skipif(_unshare_unavailable() is not None, reason=str(_unshare_unavailable()))
def test_a_full_disk_under_worker_pt_is_an_error_naming_the_file_and_the_old_file_stays(tmp_path):
    script = tmp_path / "save.py"
    script.write_text(SAVE_ON_FULL_DISK)
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"', "sh", str(mount),
                          sys.executable, str(script), str(mount)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=PYTHON_DIR), timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"error: cannot write {mount}/worker.pt: No space left on device (ENOSPC)" in out.stdout
    assert "left: ['worker.pt']" in out.stdout  # no temporary
    assert "old: 10" in out.stdout


def test_a_save_into_an_abandoned_staging_folder_fails_and_does_not_recreate_it(tmp_path):
    # The controller removes a checkpoint's staging folder when the run fails mid-save; a worker
    # still saving must not bring it back (a stray .partial folder left in the run).
    from trqat import checkpoint
    from trqat.safe_io import WriteError

    staging = tmp_path / "step-0000008.partial"
    with pytest.raises(WriteError, match=r"step-0000008\.partial/worker\.pt: No such file or directory"):
        checkpoint.write(str(staging), {"step": 8}, create=False)
    assert not staging.exists() and os.listdir(tmp_path) == []


# --- files that would run code -------------------------------------------------------------------
class _Payload:
    """Pickles to a call of os.system: loading it with plain torch.load would create the marker."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_no_file_trqat_reads_runs_pickled_code(tmp_path):
    """worker.pt (resume, export), model.init_checkpoint and the distillation teacher: refused, nothing runs."""
    import torch
    from trqat import checkpoint, safe_io

    marker = tmp_path / "ran"
    (tmp_path / "step").mkdir()
    torch.save({"format": safe_io.FORMAT, "meta": "{}", "tensors": [], "x": _Payload(str(marker))}, tmp_path / "step" / "worker.pt")
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Payload(str(marker))}, tmp_path / "init.pt")

    with pytest.raises(ValueError, match=r"holds pickled objects that would run code when loaded \(.*system.*\): refused"):
        safe_io.load(str(tmp_path / "step" / "worker.pt"))
    for what in ("model.init_checkpoint", "train.distill.teacher_checkpoint"):
        with pytest.raises(ValueError, match=f"{what}: .*init.pt holds more than tensors"):
            checkpoint.read_state_dict(str(tmp_path / "init.pt"), what)
    with pytest.raises(ValueError, match="worker.pt holds more than tensors"):
        checkpoint.read_state_dict(str(tmp_path / "step" / "worker.pt"))
    assert not marker.exists()
    # The same file under plain torch.load does run the code: the test's payload is real.
    torch.load(tmp_path / "init.pt")
    assert marker.exists()
