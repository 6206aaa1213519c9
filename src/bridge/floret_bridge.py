# floret's Python bridge: runs the ServerApp and ClientApps of a user's Flower
# App, unmodified, for floret's Rust engine.
#
# The Rust app process starts this script in the user's interpreter, with one
# end of a Unix socket in FLORET_BRIDGE_FD. The first process is the zygote: it
# imports flwr once, loads the app's components once, and then forks, on
# request, the ServerApp process and the ClientApp workers; each fork gets its
# own socket to Rust (passed over the zygote's socket with SCM_RIGHTS). Rust
# decides everything that shapes a run (node ids, message ids and times, which
# worker runs which call, the order of replies, stops, faults); this script
# only calls Flower's own code and the user's, and reports what they did.
#
# Frames on every socket: u32 LE length of the rest | u8 kind | u64 LE id |
# fields, each u32 LE length | bytes. The first field is a small JSON object;
# the others are Flower protobuf bytes or UTF-8 text. The script needs nothing
# but the standard library and flwr (1.27 to 1.42).
#
# This file is embedded in floret's binaries (src/bridge/); the Rust side of
# the protocol is src/bridge/frame.rs.

import gc
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback

HELLO, LOAD, LOADED, SPAWN, FORKED, EXITED = 1, 2, 3, 4, 5, 6
CALL, LOG, RESULT, START, GRID, GRID_REPLY, DONE, SHUTDOWN, STDIO = 7, 8, 9, 10, 11, 12, 13, 14, 15

_HEADER = struct.Struct("<IBQ")
_LEN = struct.Struct("<I")


class Channel:
    """One socket to Rust: framed writes under a lock, blocking reads."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, kind, ident, header, *fields):
        parts = [json.dumps(header, separators=(",", ":")).encode()]
        parts.extend(f if isinstance(f, (bytes, bytearray, memoryview)) else f.encode() for f in fields)
        body_len = 9 + sum(4 + len(p) for p in parts)
        chunks = [_HEADER.pack(body_len, kind, ident)]
        for part in parts:
            chunks.append(_LEN.pack(len(part)))
            chunks.append(part)
        with self.lock:
            self.sock.sendall(b"".join(chunks))

    def _read_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise EOFError("floret closed the bridge socket")
            got += k
        return buf

    def recv(self):
        head = self._read_exact(_HEADER.size)
        body_len, kind, ident = _HEADER.unpack(head)
        body = self._read_exact(body_len - 9)
        fields = []
        pos = 0
        while pos < len(body):
            (n,) = _LEN.unpack_from(body, pos)
            pos += 4
            fields.append(bytes(body[pos : pos + n]))
            pos += n
        header = json.loads(fields[0]) if fields else {}
        return kind, ident, header, fields[1:]


# ---------------------------------------------------------------------------
# Flower's API, across versions (1.27 first, then the newer locations).


class Flower:
    """The parts of flwr the bridge uses, imported once in the zygote."""

    def __init__(self):
        import flwr

        self.version = flwr.__version__
        try:
            from flwr.common.object_ref import load_app, validate
        except ImportError:
            from flwr.supercore.object_ref import load_app, validate
        self.load_app, self.validate = load_app, validate
        from flwr.clientapp.client_app import ClientApp, ClientAppException, LoadClientAppError

        self.ClientApp, self.ClientAppException = ClientApp, ClientAppException
        self.LoadClientAppError = LoadClientAppError
        try:
            from flwr.serverapp.server_app import ServerApp, LoadServerAppError
        except ImportError:
            from flwr.server.server_app import ServerApp, LoadServerAppError
        self.ServerApp, self.LoadServerAppError = ServerApp, LoadServerAppError
        try:
            from flwr.serverapp import Grid
        except ImportError:
            from flwr.server.grid import Grid
        self.Grid = Grid
        from flwr.common import Context, Error, Message, RecordDict

        self.Context, self.Error, self.Message, self.RecordDict = Context, Error, Message, RecordDict
        from flwr.common import serde

        self.serde = serde
        try:
            from flwr.common.serde_utils import metadata_from_proto, metadata_to_proto, error_to_proto
        except ImportError:
            from flwr.common.serde import metadata_from_proto, metadata_to_proto, error_to_proto
        self.metadata_from_proto, self.metadata_to_proto = metadata_from_proto, metadata_to_proto
        self.error_to_proto = error_to_proto
        try:
            from flwr.common.message import make_message
        except ImportError:
            from flwr.app.message.message import make_message
        self.make_message = make_message
        from flwr.common.config import get_fused_config_from_dir

        self.get_fused_config_from_dir = get_fused_config_from_dir
        from flwr.proto.message_pb2 import Context as ProtoContext
        from flwr.proto.message_pb2 import Message as ProtoMessage
        from flwr.proto.message_pb2 import Metadata as ProtoMetadata
        from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict
        from flwr.proto.run_pb2 import Run as ProtoRun

        self.ProtoContext, self.ProtoMessage, self.ProtoMetadata = ProtoContext, ProtoMessage, ProtoMetadata
        self.ProtoRecordDict, self.ProtoRun = ProtoRecordDict, ProtoRun
        try:
            from flwr.common.logger import console_handler, update_console_handler
        except ImportError:
            from flwr.supercore.logger import console_handler, update_console_handler
        self.console_handler, self.update_console_handler = console_handler, update_console_handler
        try:
            from flwr.supercore.task_identity import TaskIdentity
        except ImportError:
            TaskIdentity = None
        self.TaskIdentity = TaskIdentity
        self.message_module = sys.modules[Message.__module__]


# ---------------------------------------------------------------------------
# Process-wide services: output capture, virtual time, seeding.

_channel = None  # this process's Channel to Rust
_call_id = 0  # frame id that tags output: the current call, or 0
_vtime = 1740700800.0  # virtual "now" (seconds since the epoch)


def _capture_output(flower):
    """Sends everything written to sys.stdout/sys.stderr to Rust as LOG frames,
    tagged with the current call, instead of to the file descriptors."""

    def writer(stream_name):
        def write(text):
            if text:
                try:
                    _channel.send(LOG, _call_id, {"stream": stream_name}, str(text))
                except OSError:
                    pass
            return len(text)

        return write

    sys.stdout.write = writer("out")
    sys.stderr.write = writer("err")
    sys.stdout.flush = lambda: None
    sys.stderr.flush = lambda: None
    flower.console_handler.stream = sys.stdout
    if os.environ.get("NO_COLOR"):
        flower.update_console_handler(colored=False)


def _virtual_now():
    import datetime

    return datetime.datetime.fromtimestamp(_vtime, tz=datetime.timezone.utc)


def _seed_everything(seed):
    """Seeds Python's, numpy's and (when loaded) torch's and TensorFlow's global
    generators, as floret does before every call."""
    import random

    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed([seed & 0xFFFFFFFF, seed >> 32])
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.random.set_seed(seed & 0x7FFFFFFF)


def _set_death_signal():
    """Dies with the parent (the zygote), as Rust set for the zygote itself."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _versions():
    found = {"pid": os.getpid(), "python": sys.version.split()[0], "executable": sys.executable}
    import importlib.metadata as metadata

    for dist in ("flwr", "numpy", "torch", "tensorflow", "scikit-learn"):
        try:
            found[dist] = metadata.version(dist)
        except Exception:
            pass
    flwr = sys.modules.get("flwr")
    if flwr is not None and getattr(flwr, "__file__", None):
        # The directory packages are installed into: an install or an upgrade
        # there changes its modification time (a warm zygote is then stale).
        found["site"] = os.path.dirname(os.path.dirname(flwr.__file__))
    return found


# ---------------------------------------------------------------------------
# The zygote.


class _NoServerApp(Exception):
    pass


class App:
    """The loaded app: its components and its fused run config."""

    def __init__(self, flower, spec):
        self.flower = flower
        self.spec = spec
        self.run_id = spec["run_id"]
        self.app_dir = spec["app_dir"]
        self.client_app = None
        self.server_app = None
        self.run_config = None
        self.initial_arrays = None


def _load(flower, spec):
    """Loads the components as Flower does; returns (App, None) or (None, failure)."""
    app = App(flower, spec)
    from pathlib import Path

    try:
        overrides = dict(spec["overrides"])
        app.run_config = flower.get_fused_config_from_dir(Path(app.app_dir), overrides)
    except Exception as ex:
        return None, {"kind": "config", "message": str(ex), "traceback": traceback.format_exc()}
    ref = spec["clientapp"]
    try:
        valid, message = flower.validate(ref, project_dir=app.app_dir)
        if not valid and message:
            raise flower.LoadClientAppError(message) from None
        client_app = flower.load_app(ref, flower.LoadClientAppError, app.app_dir)
        if not isinstance(client_app, flower.ClientApp):
            raise flower.LoadClientAppError(f"Attribute {ref} is not of type {flower.ClientApp}") from None
        app.client_app = client_app
    except BaseException as ex:
        return None, {
            "kind": "clientapp",
            "message": str(ex),
            "type": type(ex).__name__,
            "traceback": traceback.format_exc(),
        }
    ref = spec.get("serverapp")
    try:
        if not ref:
            raise _NoServerApp()
        server_app = flower.load_app(ref, flower.LoadServerAppError, app.app_dir)
        if not isinstance(server_app, flower.ServerApp):
            raise flower.LoadServerAppError(f"Attribute {ref} is not of type {flower.ServerApp}") from None
        app.server_app = server_app
    except _NoServerApp:
        pass  # floret's built-in ServerApp drives the Python ClientApp
    except BaseException as ex:
        return None, {
            "kind": "serverapp",
            "message": str(ex),
            "type": type(ex).__name__,
            "traceback": traceback.format_exc(),
        }
    reference = spec.get("initial_arrays")
    if reference:
        try:
            app.initial_arrays = _initial_arrays(flower, app, reference)
        except BaseException as ex:
            return None, {
                "kind": "initial-arrays",
                "message": f"initial-arrays = {reference!r}: {type(ex).__name__}: {ex}",
                "type": type(ex).__name__,
                "traceback": traceback.format_exc(),
            }
    return app, None


def _initial_arrays(flower, app, reference):
    """The model a built-in ServerApp starts from: what the app's function
    returns (called with the ServerApp's Context when it takes an argument),
    as ArrayRecord protobuf bytes."""
    import inspect

    from flwr.common import Array, ArrayRecord

    value = flower.load_app(reference, ValueError, app.app_dir)
    if callable(value) and not isinstance(value, ArrayRecord):
        required = [
            p
            for p in inspect.signature(value).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if required:
            context = flower.Context(
                run_id=app.run_id,
                node_id=1,
                node_config={},
                state=flower.RecordDict(),
                run_config=dict(app.run_config),
            )
            value = value(context)
        else:
            value = value()
    if isinstance(value, dict):
        value = ArrayRecord(array_dict={str(k): v if isinstance(v, Array) else Array(v) for k, v in value.items()})
    elif isinstance(value, (list, tuple)):
        value = ArrayRecord(numpy_ndarrays=list(value))
    if not isinstance(value, ArrayRecord):
        raise TypeError(f"it returned {type(value).__name__}, not an ArrayRecord or a list of NumPy arrays")
    return flower.serde.array_record_to_proto(value).SerializeToString()


def zygote(flower):
    global _channel
    control = _channel
    control.send(HELLO, 0, _versions())
    app = None
    children = {}
    reaper_lock = threading.Lock()

    def reap():
        while True:
            with reaper_lock:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
            info = children.pop(pid, {})
            report = {"pid": pid, "role": info.get("role"), "index": info.get("index")}
            if os.WIFSIGNALED(status):
                report["signal"] = os.WTERMSIG(status)
            else:
                report["code"] = os.WEXITSTATUS(status)
            try:
                control.send(EXITED, 0, report)
            except OSError:
                return

    def reaper():
        # SIGCHLD wakes this thread through a pipe; it reports exits at once.
        while True:
            os.read(wake_r, 1)
            reap()

    wake_r, wake_w = os.pipe()
    signal.signal(signal.SIGCHLD, lambda *_: os.write(wake_w, b"x"))
    threading.Thread(target=reaper, daemon=True).start()

    while True:
        try:
            kind, ident, header, fields = _recv_with_fds(control)
        except EOFError:
            os._exit(0)
        if kind == LOAD:
            app, failure = _load(flower, header)
            reply = {"ok": app is not None, "versions": _versions()}
            if failure:
                reply["failure"] = failure
            else:
                if app.server_app is None:
                    reply["server_api"] = "builtin"
                else:
                    reply["server_api"] = "message" if getattr(app.server_app, "_main", None) else "legacy"
                reply["run_config"] = [[k, v] for k, v in app.run_config.items()]
            fields = [app.initial_arrays] if app is not None and app.initial_arrays is not None else []
            control.send(LOADED, ident, reply, *fields)
        elif kind == SPAWN:
            fd = fields[0]
            role = header["role"]
            if threading.active_count() > 2:
                # User code started threads at import time; forking would copy
                # a process whose other threads vanish. Still fork (the child
                # runs only the bridge loop), but say so.
                header["threads"] = threading.active_count()
            # Objects that exist now are shared with the child: keep the
            # collector from writing to them (and so copying their pages) in
            # either process.
            gc.freeze()
            with reaper_lock:
                pid = os.fork()
                if pid == 0:
                    _child(flower, app, role, fd, control, wake_r, wake_w)
                children[pid] = {"role": role, "index": header.get("index")}
            if role == "zygote":
                # Also here, so that it has left our group before FORKED is
                # sent (a stale warm zygote's group is killed).
                try:
                    os.setpgid(pid, pid)
                except OSError:
                    pass
            os.close(fd)
            control.send(FORKED, ident, {"pid": pid, "role": role, "index": header.get("index")})
        elif kind == STDIO:
            # A zygote forked from a warm one writes its file-level output
            # (C extensions, subprocesses) to the pipes of the run's process.
            os.dup2(fields[0], 1)
            os.dup2(fields[1], 2)
            os.close(fields[0])
            os.close(fields[1])
        elif kind == SHUTDOWN:
            os._exit(0)


def _recv_with_fds(channel):
    """Receives one frame; a SPAWN frame carries one file descriptor and a
    STDIO frame two, returned as its fields."""
    msg, fds, _flags, _addr = socket.recv_fds(channel.sock, _HEADER.size, 2, socket.MSG_WAITALL)
    if not msg:
        raise EOFError("floret closed the bridge socket")
    if len(msg) < _HEADER.size:
        msg += channel._read_exact(_HEADER.size - len(msg))
    body_len, kind, ident = _HEADER.unpack(msg)
    body = channel._read_exact(body_len - 9)
    fields, pos = [], 0
    while pos < len(body):
        (n,) = _LEN.unpack_from(body, pos)
        pos += 4
        fields.append(bytes(body[pos : pos + n]))
        pos += n
    header = json.loads(fields[0]) if fields else {}
    return kind, ident, header, list(fds)


def _child(flower, app, role, fd, control, wake_r, wake_w):
    """The forked process: a ClientApp worker, the ServerApp, or (forked from
    a warm zygote that has imported flwr only) the zygote of one run."""
    global _channel
    try:
        if role == "zygote":
            # The zygote of one run outlives the warm zygote it came from (a
            # stale warm one is replaced while runs go on): it leads a group
            # of its own and ends when the run's process closes its socket.
            os.setpgid(0, 0)
        else:
            _set_death_signal()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.sock.close()
        os.close(wake_r)
        os.close(wake_w)
        os.set_inheritable(fd, False)
        _channel = Channel(socket.socket(fileno=fd))
        if role == "client":
            client_worker(flower, app)
        elif role == "server":
            server_process(flower, app)
        elif role == "zygote":
            zygote(flower)
    except EOFError:
        pass
    except BaseException:
        try:
            sys.__stderr__.write(traceback.format_exc())
        except Exception:
            pass
        os._exit(70)
    os._exit(0)


# ---------------------------------------------------------------------------
# ClientApp workers.


def _config_from_pairs(pairs):
    return {key: value for key, value in pairs}


def _error_reply(flower, message, code, reason):
    return flower.Message(flower.Error(code=code, reason=reason), reply_to=message)


def client_worker(flower, app):
    global _call_id, _vtime
    if flower.TaskIdentity is not None:
        flower.TaskIdentity.run_id = app.run_id
        flower.TaskIdentity.task_id = 0
    serde = flower.serde
    while True:
        kind, ident, header, fields = _channel.recv()
        if kind == SHUTDOWN:
            return
        if kind != CALL:
            continue
        _call_id = ident
        _vtime = header["vtime"]
        started = time.perf_counter()
        metadata = flower.metadata_from_proto(flower.ProtoMetadata.FromString(fields[0]))
        content = serde.recorddict_from_proto(flower.ProtoRecordDict.FromString(fields[1]))
        message = flower.make_message(metadata=metadata, content=content)
        state = serde.recorddict_from_proto(flower.ProtoRecordDict.FromString(fields[2]))
        node_config = _config_from_pairs(header["node_config"])
        context = flower.Context(
            run_id=app.run_id,
            node_id=header["node_id"],
            node_config=node_config,
            state=state,
            run_config=dict(app.run_config),
        )
        if flower.TaskIdentity is not None:
            flower.TaskIdentity.node_id = header["node_id"]
        _seed_everything(header["seed"])
        reply, keep_state = _call_client(flower, app, message, context)
        reply.metadata.__dict__["_message_id"] = header["reply_id"]
        reply.metadata.__dict__["_created_at"] = _vtime
        reply_bytes = serde.message_to_proto(reply).SerializeToString()
        fields_out = [reply_bytes]
        result = {"status": "ok" if keep_state else "error", "elapsed": time.perf_counter() - started}
        if keep_state:
            fields_out.append(serde.recorddict_to_proto(context.state).SerializeToString())
            result["node_config"] = [[k, v] for k, v in context.node_config.items()]
        _call_id = 0
        _channel.send(RESULT, ident, result, *fields_out)


def _call_client(flower, app, message, context):
    """Calls the ClientApp as Flower's simulation worker does; returns the reply
    and whether the node's context is kept."""
    from logging import ERROR

    from flwr.common.logger import log as flwr_log

    try:
        try:
            reply = app.client_app(message=message, context=context)
        except flower.LoadClientAppError:
            raise
        except Exception as ex:
            raise flower.ClientAppException(str(ex)) from ex
        if not isinstance(reply, flower.Message):
            raise TypeError(
                f"the ClientApp returned {type(reply).__name__}, not a Message (floret answers with an error "
                "where Flower would wait for the reply until its timeout)"
            )
        if reply.metadata.reply_to_message_id != message.metadata.message_id:
            raise ValueError(
                "the ClientApp returned a Message that is not a reply to the message it received (build it "
                "with Message(content, reply_to=message))"
            )
        if context.run_config != app.run_config:
            raise ValueError(
                f"The `run_config` field of the `Context` object cannot be modified (run_id: {app.run_id})."
            )
        return reply, True
    except Exception as ex:
        flwr_log(ERROR, ex)
        flwr_log(ERROR, traceback.format_exc())
        if isinstance(ex, flower.ClientAppException):
            code = 2
        elif isinstance(ex, flower.LoadClientAppError):
            code = 1
        else:
            code = 0
        reason = str(type(ex)) + ":<'" + str(ex) + "'>"
        return _error_reply(flower, message, code, reason), False


# ---------------------------------------------------------------------------
# The ServerApp process and its Grid.


class FloretStop(BaseException):
    """The run was stopped: unwinds the ServerApp (not an Exception, so user
    code cannot swallow it)."""


class SortedIds(set):
    """A set of node ids that iterates in ascending order, so that sampling
    with Python's random over `list(grid.get_node_ids())` is reproducible."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self)))


class Pending:
    def __init__(self):
        self.done = threading.Event()
        self.header = None
        self.fields = None


def server_process(flower, app):
    global _vtime
    kind, ident, header, fields = _channel.recv()
    if kind != START:
        return
    _vtime = header["vtime"]
    run = flower.serde.run_from_proto(flower.ProtoRun.FromString(fields[0]))
    grid = make_grid(flower, run, header["node_ids"])
    if flower.TaskIdentity is not None:
        flower.TaskIdentity.run_id = app.run_id
        flower.TaskIdentity.node_id = 1
        flower.TaskIdentity.task_id = 1
    context = flower.Context(
        run_id=app.run_id, node_id=1, node_config={}, state=flower.RecordDict(), run_config=dict(app.run_config)
    )
    _seed_everything(header["seed"])
    status = {"status": "ok"}
    try:
        app.server_app(grid=grid, context=context)
    except FloretStop:
        status = {"status": "stopped"}
    except BaseException as ex:
        from logging import ERROR
        from flwr.common.logger import log as flwr_log

        flwr_log(ERROR, "ServerApp thread raised an exception: %s", ex)
        flwr_log(ERROR, traceback.format_exc())
        status = {"status": "error", "error": str(ex), "type": type(ex).__name__}
    context_bytes = flower.serde.context_to_proto(context).SerializeToString(deterministic=True)
    _channel.send(DONE, 0, status, context_bytes)


def make_grid(flower, run, node_ids):
    serde = flower.serde
    pending = {}
    pending_lock = threading.Lock()
    counter = [0]
    stopped = [False]

    def reader():
        global _vtime
        while True:
            try:
                kind, ident, header, fields = _channel.recv()
            except (EOFError, OSError):
                os._exit(0)
            if kind == GRID_REPLY:
                with pending_lock:
                    slot = pending.pop(ident, None)
                if slot is not None:
                    if "vtime" in header:
                        _vtime = header["vtime"]
                    slot.header, slot.fields = header, fields
                    slot.done.set()
            elif kind == SHUTDOWN:
                os._exit(0)

    threading.Thread(target=reader, daemon=True).start()

    def request(header, blobs=()):
        if stopped[0]:
            raise FloretStop()
        slot = Pending()
        with pending_lock:
            counter[0] += 1
            ident = counter[0]
            pending[ident] = slot
        _channel.send(GRID, ident, header, *blobs)
        slot.done.wait()
        if slot.header.get("stop"):
            stopped[0] = True
            raise FloretStop()
        if not slot.header.get("ok", True):
            raise RuntimeError(slot.header.get("error", "the grid operation failed"))
        return slot.header, slot.fields

    def encode(messages):
        """Message headers and distinct contents (every message of a phase
        usually shares one RecordDict: it is encoded once)."""
        blobs, index_of, headers = [], {}, []
        for message in messages:
            meta = message.metadata
            if message.has_content():
                key = id(message.content)
                if key not in index_of:
                    index_of[key] = len(blobs)
                    blobs.append(serde.recorddict_to_proto(message.content).SerializeToString())
                body = {"content": index_of[key]}
            else:
                blobs.append(flower.error_to_proto(message.error).SerializeToString())
                body = {"error": len(blobs) - 1}
            headers.append(
                dict(
                    body,
                    dst=meta.dst_node_id,
                    type=meta.message_type,
                    group=meta.group_id,
                    ttl=meta.ttl,
                    created_at=meta.created_at,
                )
            )
        return headers, blobs

    def check(message):
        meta = message.metadata
        if not (meta.reply_to_message_id == "" and meta.ttl > 0 and getattr(meta, "delivered_at", "") == ""):
            raise ValueError(f"Invalid message: {message}")

    def assign(messages, ids):
        for message, message_id in zip(messages, ids):
            meta = message.metadata
            meta.__dict__["_run_id"] = run.run_id
            meta.__dict__["_src_node_id"] = 1
            meta.__dict__["_message_id"] = message_id

    def decode(fields):
        return [serde.message_from_proto(flower.ProtoMessage.FromString(blob)) for blob in fields]

    class FloretGrid(flower.Grid):
        """floret's Grid: every push and pull goes to the Rust engine, which
        dispatches the calls and answers in the order the messages were sent."""

        _deprecation_logged = False

        def set_run(self, run_or_id):
            run_id = getattr(run_or_id, "run_id", run_or_id)
            if run_id != run.run_id:
                raise RuntimeError(f"Cannot find the run with ID: {run_id}")

        @property
        def run(self):
            return type(run)(**vars(run))

        def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
            if not FloretGrid._deprecation_logged:
                FloretGrid._deprecation_logged = True
                try:
                    from flwr.common.logger import warn_deprecated_feature

                    warn_deprecated_feature(
                        "`Driver.create_message` / `Grid.create_message` is deprecated."
                        "Use `Message` constructor instead."
                    )
                except Exception:
                    pass
            return flower.Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self):
            return SortedIds(node_ids)

        def push_messages(self, messages):
            messages = list(messages)
            for message in messages:
                check(message)
            headers, blobs = encode(messages)
            header, _ = request({"op": "push", "messages": headers}, blobs)
            ids = header["ids"]
            assign(messages, ids)
            return [i for i in ids if i]

        def pull_messages(self, message_ids):
            header, fields = request({"op": "pull", "ids": list(message_ids)})
            return decode(fields)

        def send_and_receive(self, messages, *, timeout=None):
            messages = list(messages)
            for message in messages:
                check(message)
            headers, blobs = encode(messages)
            header, fields = request(
                {"op": "send_and_receive", "messages": headers, "timeout": timeout}, blobs
            )
            assign(messages, header["ids"])
            return decode(fields)

    return FloretGrid()


# ---------------------------------------------------------------------------


def main():
    global _channel
    fd = int(os.environ.pop("FLORET_BRIDGE_FD"))
    _channel = Channel(socket.socket(fileno=fd))
    try:
        flower = Flower()
    except Exception as ex:
        _channel.send(
            HELLO,
            0,
            dict(_versions(), error=f"{type(ex).__name__}: {ex}", traceback=traceback.format_exc()),
        )
        os._exit(3)
    flower.message_module.now = _virtual_now
    _capture_output(flower)
    zygote(flower)


if __name__ == "__main__":
    main()
