"""Endpoints: TcpServer, TcpAgent, TcpClient over the compiled module."""

from __future__ import annotations

import atexit
import operator
import os
import threading
import time
import weakref
from typing import (Any, Callable, Iterable, List, NamedTuple, Optional,
                    Tuple, TypeVar, Union, overload)

from . import _hpsock_swig as _c
from ._constants import (Counter, Model, Option, Role, State, StrOption,
                         TlsInfo, TlsVerify)
from ._errors import EINLOOP, ENOMEM, ESTATE, ETIMEDOUT, Error
from ._handler import Handler, bind_handler

__all__ = ["Endpoint", "TcpServer", "TcpAgent", "TcpClient", "Stats",
           "UdpServer", "UdpClient", "UdpCast", "UdpNode"]

Buffer = Union[bytes, bytearray, memoryview]
_E = TypeVar("_E", bound="Endpoint")
PathLike = Union[str, "os.PathLike[str]"]

# Hot-path functions, looked up once.
_send = _c.hpsb_send
_sendv = _c.hpsb_sendv
_fetch = _c.hpsb_fetch
_peek = _c.hpsb_peek
_getopt = _c.hpsb_getopt
_setopt = _c.hps_setopt

# Running endpoints, stopped at interpreter exit so no loop thread calls
# into a Python that is being torn down.
_live: "weakref.WeakSet[Endpoint]" = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        endpoints = list(_live)
    for ep in endpoints:
        try:
            ep.stop()
        except Exception:  # pragma: no cover - best effort at exit
            pass


class Stats(NamedTuple):
    """Counters of a connection, or of a whole server/agent (conn 0)."""

    bytes_sent: int
    bytes_received: int
    msgs_sent: int
    """send/sendv/send_file calls accepted"""
    msgs_received: int
    """on_receive events delivered"""
    age_ms: int
    """connection: time since accept/connect"""
    silence_ms: int
    """connection: time since the last receive"""


def _option(key: Option, kind: Callable[[int], Any], doc: str) -> property:
    def fget(self: "Endpoint") -> Any:
        return kind(_getopt(self._ep, key))

    def fset(self: "Endpoint", value: Any) -> None:
        _setopt(self._ep, key, operator.index(value))

    return property(fget, fset, doc=doc)


def _str_option(key: StrOption, doc: str) -> property:
    def fget(self: "Endpoint") -> str:
        return _str_result(_c.hpsw_getopt_str(self._ep, key))

    def fset(self: "Endpoint", value: Optional[str]) -> None:
        _c.hps_setopt_str(self._ep, key, None if value is None else os.fspath(value))

    return property(fget, fset, doc=doc)


def _secret_option(key: StrOption, doc: str) -> property:
    """A write-only string option: reading the property raises
    AttributeError (the library never gives the value back)."""
    def fset(self: "Endpoint", value: Optional[str]) -> None:
        _c.hps_setopt_str(self._ep, key, value)

    return property(None, fset, doc=doc)


def _str_result(s: Optional[str]) -> str:
    """A string from an hpsw_* call; None means it failed."""
    if s is None:
        raise Error(_c.hpsw_error())
    return s


_OPTION_NAMES = {o.name.lower(): o for o in Option}
_OPTION_NAMES.update({o.name.lower(): o for o in StrOption})


class Endpoint:
    """What every endpoint role shares. Use TcpServer, TcpAgent or
    TcpClient.

    Create with a :class:`Handler` and options as keyword arguments (the
    lower-case names of :class:`hpsock.Option`, also properties), e.g.
    ``TcpServer(MyHandler(), workers=2, recv_model=hpsock.Model.PACK)``.
    Options are set before ``start`` (``events``, ``send_high_water`` and
    ``send_low_water`` also while running).

    An endpoint is a context manager: leaving the ``with`` block closes it
    (stops it, then frees it). While started, it is kept alive by its loop
    threads, and an endpoint still running at interpreter exit is stopped
    there.

    Every method may be called from any thread, handlers included, except
    ``close`` and ``wait`` (not from this endpoint's own handlers). A method
    that fails raises :class:`hpsock.Error`. Calls made after ``close``
    raise ``Error`` with ``EHANDLE``; do not race ``close`` with other
    calls from other threads.
    """

    _role: Role

    def __init__(self, handler: Optional[object] = None, **options: Any) -> None:
        self._ctx = None
        self._ep = None
        ctx = _c.hpsb_new(self._role)
        if ctx is None:
            raise Error(ENOMEM)
        self._ctx = ctx
        self._ep = _c.hpsb_endpoint(ctx)
        self._events: Optional[int] = None
        self._handler: object = handler if handler is not None else Handler()
        for name, value in options.items():
            if name not in _OPTION_NAMES:
                raise TypeError(f"{type(self).__name__}() got an unknown "
                                f"option {name!r}")
            setattr(self, name, value)

    # ---- life cycle ------------------------------------------------------

    def _start(self, host: Optional[str], port: int) -> None:
        if self.state in (State.STARTED, State.STOPPING):
            raise Error(ESTATE)
        fns, mask = bind_handler(self._handler)
        _setopt(self._ep, Option.EVENTS,
                mask if self._events is None else self._events)
        _c.hpsb_start(self._ctx, self, fns, host, port)
        with _live_lock:
            _live.add(self)

    def stop(self) -> None:
        """Stop: close every connection (each gets on_close with op CLOSE),
        then deliver on_shutdown. From another thread it returns once
        on_shutdown has run; from inside a handler (of this endpoint or any
        other) it only begins the stop.
        Stopping a stopped endpoint does nothing; one never started raises
        ``ESTATE``. A stopped endpoint may be started again."""
        _c.hps_stop(self._ep)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the endpoint is stopped, at most ``timeout`` seconds
        (None: no limit). Returns True if it is stopped, False on timeout.
        Signals (Ctrl-C) are handled while waiting."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                step = 250
            else:
                step = max(0, min(250, int((deadline - time.monotonic()) * 1000)))
            try:
                _c.hps_wait(self._ep, step)
                return True
            except Error as e:
                if e.code != ETIMEDOUT:
                    raise
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        """Stop (as ``stop``; the handlers it runs may still call the
        endpoint) and free the endpoint. Closing twice does nothing; any
        other call afterwards raises ``EHANDLE``. Not from this endpoint's
        own handlers (``EINLOOP``): call ``stop`` there."""
        ctx = self._ctx
        if ctx is None:
            return
        if self._on_own_loop():
            raise Error(EINLOOP)
        # Stop while the handle is still set: the on_close and on_shutdown
        # handlers this delivers may call the endpoint (tls_error ...).
        try:
            _c.hps_stop(self._ep)
        except Error as e:
            if e.code != ESTATE:  # never started
                raise
        self._ctx = None
        self._ep = None
        with _live_lock:
            _live.discard(self)
        _c.hpsb_free(ctx)

    def _on_own_loop(self) -> bool:
        # hps_wait answers EINLOOP only on the endpoint's own loop threads.
        try:
            _c.hps_wait(self._ep, 0)
        except Error as e:
            return e.code == EINLOOP
        return False

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Runs only when not started (a started endpoint is referenced by
        # its loops) or from the last handler (hpsb_free then frees from
        # another thread).
        try:
            ctx = self._ctx
            if ctx is not None:
                self._ctx = None
                self._ep = None
                _c.hpsb_free(ctx)
        except Exception:  # pragma: no cover - interpreter teardown
            pass

    @property
    def handler(self) -> object:
        """The handler given at creation. It may be replaced only while the
        endpoint is not started (``ESTATE``): a started endpoint calls the
        methods it had at ``start``."""
        return self._handler

    @handler.setter
    def handler(self, handler: Optional[object]) -> None:
        if self.state in (State.STARTED, State.STOPPING):
            raise Error(ESTATE)
        self._handler = handler if handler is not None else Handler()

    @property
    def state(self) -> State:
        """The life-cycle state (:class:`hpsock.State`)."""
        return State(_c.hps_state(self._ep))

    @property
    def role(self) -> Role:
        """The role (:class:`hpsock.Role`)."""
        return Role(_c.hps_role(self._ep))

    @property
    def closed(self) -> bool:
        """True after ``close``."""
        return self._ctx is None

    # ---- options -----------------------------------------------------------

    def getopt(self, option: Union[Option, int]) -> int:
        """Read an option by key (:class:`hpsock.Option`)."""
        return _getopt(self._ep, option)

    def setopt(self, option: Union[Option, int], value: int) -> None:
        """Set an option by key (:class:`hpsock.Option`). Options other
        than ``EVENTS``, ``SEND_HIGH_WATER`` and ``SEND_LOW_WATER`` can only
        be set while not started (``ESTATE``)."""
        if option == Option.EVENTS:
            self.events = value
        else:
            _setopt(self._ep, option, operator.index(value))

    workers = _option(Option.WORKERS, int, "Loop threads, 1..64; default: cores.")
    recv_model = _option(Option.RECV_MODEL, Model, "Receive model (:class:`hpsock.Model`); default PUSH.")
    sndbuf = _option(Option.SNDBUF, int, "SO_SNDBUF bytes, 0 = system default.")
    rcvbuf = _option(Option.RCVBUF, int, "SO_RCVBUF bytes, 0 = system default.")
    max_connections = _option(Option.MAX_CONNECTIONS, int, "1..16M; default: what the descriptor limit holds (TCP), 100000 (UDP).")
    keepalive_time = _option(Option.KEEPALIVE_TIME, int, "ms idle before keepalive probes, 0 = off (default).")
    keepalive_interval = _option(Option.KEEPALIVE_INTERVAL, int, "ms between keepalive probes; default 20000.")
    nodelay = _option(Option.NODELAY, bool, "TCP_NODELAY; default True.")
    reuse_addr = _option(Option.REUSE_ADDR, bool, "SO_REUSEADDR; default True.")
    ipv6_only = _option(Option.IPV6_ONLY, bool, "An IPv6 socket accepts only IPv6 (else dual stack); default False.")
    max_send_queue = _option(Option.MAX_SEND_QUEUE, int, "Unsent bytes per connection before send raises ESENDQ; default 16 MiB.")
    free_pool = _option(Option.FREE_POOL, int, "Free connection objects cached per loop; default 1024.")
    connect_timeout = _option(Option.CONNECT_TIMEOUT, int, "ms, 1..600000; default 10000.")
    backlog = _option(Option.BACKLOG, int, "Listen backlog, 1..65535; default 1024.")
    pack_flag = _option(Option.PACK_FLAG, int, "Pack header flag 0..1023; 0 = incoming flags not checked (default).")
    pack_max = _option(Option.PACK_MAX, int, "Max pack body, 1..4194303; default 262144.")
    pull_max = _option(Option.PULL_MAX, int, "Max unread bytes per connection (pull model) before it closes with EPULLFULL; default 4 MiB.")
    silence_timeout = _option(Option.SILENCE_TIMEOUT, int, "ms without receiving before a connection closes with ESILENCE; 0 = off (default).")
    send_high_water = _option(Option.SEND_HIGH_WATER, int, "Unsent bytes per connection above which on_high_water comes (and, with auto_pause, reading pauses); 1..1 GiB; default 1 MiB. Also while running.")
    send_low_water = _option(Option.SEND_LOW_WATER, int, "After on_high_water, unsent bytes at or below this give on_low_water (and resume an automatic pause); kept below send_high_water; default 256 KiB. Also while running.")
    auto_pause = _option(Option.AUTO_PAUSE, bool, "Pause reading from a connection while its unsent bytes are above send_high_water, resume at send_low_water: an echo or request/response server needs no code for back-pressure; default False.")
    close_timeout = _option(Option.CLOSE_TIMEOUT, int, "ms a graceful close may go without its peer taking any bytes before it is forced (on_close error ECLOSETIMEOUT); 1..86400000; default 30000.")
    udp_max_datagram = _option(Option.UDP_MAX_DATAGRAM, int, "UDP: bytes per datagram, 1..65527; default 1432.")
    udp_detect_interval = _option(Option.UDP_DETECT_INTERVAL, int, "UDP server/client: detection interval in ms, 0 = off; default 60000.")
    udp_detect_attempts = _option(Option.UDP_DETECT_ATTEMPTS, int, "UDP server/client: silent intervals before EUDPIDLE; default 3.")
    udp_cast_mode = _option(Option.UDP_CAST_MODE, int, "UdpCast: CastMode.MULTICAST (default) or BROADCAST.")
    udp_multicast_ttl = _option(Option.UDP_MULTICAST_TTL, int, "UdpCast/UdpNode: multicast TTL, 0..255; default 1.")
    udp_multicast_loop = _option(Option.UDP_MULTICAST_LOOP, bool, "UdpCast/UdpNode: own multicast datagrams come back; default True.")
    tls = _option(Option.TLS, bool, "Every connection speaks TLS; default False.")
    tls_verify = _option(Option.TLS_VERIFY, TlsVerify, "Peer verification (:class:`hpsock.TlsVerify`); default PEER for agents and clients, NONE for servers.")
    tls_min_version = _option(Option.TLS_MIN_VERSION, int, "Lowest TLS version accepted: hpsock.TLS_V1_2 (default) or TLS_V1_3.")
    tls_session_cache = _option(Option.TLS_SESSION_CACHE, bool, "Session cache and resumption; default True.")
    tls_handshake_timeout = _option(Option.TLS_HANDSHAKE_TIMEOUT, int, "ms from accept/connect to the end of the TLS handshake; default 10000.")
    tls_cert_file = _str_option(StrOption.TLS_CERT_FILE, "Certificate (chain) PEM file.")
    tls_key_file = _str_option(StrOption.TLS_KEY_FILE, "Private key PEM file.")
    tls_cert_pem = _str_option(StrOption.TLS_CERT_PEM, "Certificate (chain) as PEM text.")
    tls_key_pem = _secret_option(StrOption.TLS_KEY_PEM, "Private key as PEM text (write-only; if encrypted, set tls_key_password).")
    tls_ca_file = _str_option(StrOption.TLS_CA_FILE, "Trusted CAs, PEM file (default: the system's store).")
    tls_ca_path = _str_option(StrOption.TLS_CA_PATH, "Trusted CAs, hashed directory.")
    tls_ca_pem = _str_option(StrOption.TLS_CA_PEM, "Trusted CAs as PEM text.")
    tls_ciphers = _str_option(StrOption.TLS_CIPHERS, "TLS 1.2 cipher list (OpenSSL syntax).")
    tls_ciphersuites = _str_option(StrOption.TLS_CIPHERSUITES, "TLS 1.3 ciphersuites (OpenSSL syntax).")
    tls_sni = _str_option(StrOption.TLS_SNI, "Agent/client: server name sent and verified; default: the host given when it is a name.")
    tls_key_password = _secret_option(StrOption.TLS_KEY_PASSWORD, "Passphrase of an encrypted private key (write-only). An encrypted key without it fails start with ETLSCONFIG, never a prompt.")

    def setopt_str(self, option: Union[StrOption, int], value: Optional[str]) -> None:
        """Set a string option by key (:class:`hpsock.StrOption`)."""
        _c.hps_setopt_str(self._ep, option, value)

    def getopt_str(self, option: Union[StrOption, int]) -> str:
        """Read a string option by key ("" when unset)."""
        return _str_result(_c.hpsw_getopt_str(self._ep, option))

    def tls_info(self, conn: int, kind: Union[TlsInfo, int]) -> str:
        """A TLS fact of a connection (:class:`hpsock.TlsInfo`): version,
        cipher, server name, peer subject, ``"1"`` if resumed. Readable
        from on_accept/on_connect until on_close returns."""
        return _str_result(_c.hpsw_tls_info(self._ep, conn, kind))

    def tls_error(self, conn: int) -> str:
        """Why a TLS connection failed ("" if it did not); call it from
        ``on_close``, where the error is one of ``hpsock.ETLS*``."""
        return self.tls_info(conn, TlsInfo.ERROR)

    def tls_config_error(self) -> str:
        """Why the last ``start`` failed with ``ETLSCONFIG``."""
        return self.tls_info(0, TlsInfo.CONFIG_ERROR)

    @property
    def events(self) -> int:
        """Mask of events delivered (``1 << hpsock.Event.X``; CLOSE and
        SHUTDOWN always are). By default ``start`` sets it to the events
        whose methods the handler overrides; setting it (also while
        running) replaces that choice."""
        return _getopt(self._ep, Option.EVENTS)

    @events.setter
    def events(self, mask: int) -> None:
        mask = operator.index(mask)
        _setopt(self._ep, Option.EVENTS, mask)
        self._events = mask

    # ---- connections -------------------------------------------------------

    def send(self, conn: int, data: Buffer) -> None:
        """Send ``data`` (any contiguous buffer: bytes, bytearray,
        memoryview, ...) on ``conn``; it is copied or written before this
        returns. Pack model: ``data`` is one frame body. Raises
        ``ENOTFOUND`` (no such or a closing connection), ``ESENDQ``
        (the send queue limit; nothing was queued), ``EINVAL`` (empty
        data), ``EPACKSIZE``/``EPACKEMPTY``."""
        _send(self._ep, conn, data)

    def sendv(self, conn: int, buffers: Iterable[Buffer]) -> None:
        """Send several buffers as one send: their bytes go out contiguously
        (pack model: as one frame body)."""
        _sendv(self._ep, conn, buffers)

    def send_file(self, conn: int, path: PathLike, offset: int = 0,
                  length: int = -1) -> None:
        """Send ``length`` bytes (-1: to the end) of the file at ``path``
        from ``offset``, in bounded chunks. Push and pull models only
        (``EMODEL``); ``EFILE`` if it cannot be read."""
        _c.hps_send_file(self._ep, conn, os.fsdecode(path), offset, length)

    def disconnect(self, conn: int, force: bool = False) -> None:
        """Close ``conn``: queued bytes are sent first, unless ``force``.
        Its on_close has op CLOSE and error 0."""
        _c.hps_disconnect(self._ep, conn, 1 if force else 0)

    def pause_receive(self, conn: int, pause: bool = True) -> None:
        """Stop (``pause``) or resume reading from ``conn``; while paused
        no on_receive arrives and TCP flow-controls the peer."""
        _c.hps_pause_receive(self._ep, conn, 1 if pause else 0)

    def resume_receive(self, conn: int) -> None:
        """``pause_receive(conn, False)``."""
        _c.hps_pause_receive(self._ep, conn, 0)

    def fetch(self, conn: int, size: int) -> bytes:
        """Pull model: take exactly ``size`` waiting bytes. Raises
        ``EAGAIN`` (fewer wait; nothing is taken) or ``EMODEL``."""
        return _fetch(self._ep, conn, size)

    def peek(self, conn: int, size: int) -> bytes:
        """Pull model: as ``fetch``, but the bytes stay waiting."""
        return _peek(self._ep, conn, size)

    def conn_count(self) -> int:
        """The number of open connections."""
        return _c.hps_conn_count(self._ep)

    def conn_list(self) -> List[int]:
        """The IDs of the open connections."""
        return _c.hpsb_conn_list(self._ep)

    def local_address(self, conn: int) -> Tuple[str, int]:
        """``(host, port)`` of ``conn``'s local end."""
        return _c.hpsb_local_address(self._ep, conn)

    def remote_address(self, conn: int) -> Tuple[str, int]:
        """``(host, port)`` of ``conn``'s peer."""
        return _c.hpsb_remote_address(self._ep, conn)

    def set_extra(self, conn: int, value: int) -> None:
        """Attach a pointer-sized unsigned int to ``conn`` (0 initially).
        To attach Python objects, key a dict by connection ID and clean it
        up in on_close."""
        _c.hps_set_extra(self._ep, conn, value)

    def get_extra(self, conn: int) -> int:
        """The value set by ``set_extra``."""
        return _c.hpsb_get_extra(self._ep, conn)

    def stats(self, conn: int = 0) -> Stats:
        """Counters of ``conn``, or (0 on a server or agent) totals since
        the last start, closed connections included."""
        return Stats(*_c.hpsb_get_stats(self._ep, conn))

    def unsent(self, conn: int) -> int:
        """The bytes ``conn`` accepted for sending (send/sendv with pack
        headers, send_file's bytes not yet read) that are not yet handed to
        the kernel. Compare with ``send_high_water``/``send_low_water``,
        or wait for ``on_low_water``."""
        return _c.hpsb_get_unsent(self._ep, conn)

    def counter(self, kind: Union[Counter, int]) -> int:
        """An endpoint-wide counter (:class:`hpsock.Counter`) since the
        endpoint was created. ``EINVAL`` for an unknown one."""
        return _c.hpsb_get_counter(self._ep, kind)

    def disconnect_silent(self, silence_ms: int) -> int:
        """Force-disconnect every connection that received nothing for at
        least ``silence_ms``; their on_close has error ``ESILENCE``.
        Returns how many were selected."""
        return _c.hps_disconnect_silent(self._ep, silence_ms)

    def disconnect_long(self, age_ms: int) -> int:
        """Force-disconnect every connection open for at least ``age_ms``.
        Returns how many were selected."""
        return _c.hps_disconnect_long(self._ep, age_ms)

    def __repr__(self) -> str:
        if self._ctx is None:
            return f"<{type(self).__name__} closed>"
        return f"<{type(self).__name__} {self.state.name}>"


class TcpServer(Endpoint):
    """Listens and accepts many connections.

    >>> class Echo(hpsock.Handler):
    ...     def on_receive(self, server, conn, data):
    ...         server.send(conn, data)
    >>> with hpsock.TcpServer(Echo()) as server:
    ...     server.start("127.0.0.1", 0)
    ...     host, port = server.listen_address
    """

    _role = Role.TCP_SERVER

    def start(self, host: Optional[str] = None, port: int = 0) -> None:
        """Bind and listen on ``host:port``. ``host`` None or "" = every
        IPv4 address; "::" = every IPv6 address (dual stack unless
        ``ipv6_only``). Port 0 picks a free port: read it back from
        ``listen_address``. Raises e.g. ``EADDR``, ``-errno.EADDRINUSE``,
        ``EHANDLER`` (on_prepare returned ERROR)."""
        self._start(host, port)

    @property
    def listen_address(self) -> Tuple[str, int]:
        """``(host, port)`` the started server listens on."""
        return _c.hpsb_listen_address(self._ep)

    def tls_add_cert(self, name: str, cert: Union[str, PathLike],
                     key: Union[str, PathLike]) -> None:
        """Serve ``cert``/``key`` to clients asking for server name ``name``
        (SNI; ``"*.domain"`` matches one label). Each is PEM text when it
        begins with ``-----BEGIN``, else a file path. Before ``start``."""
        _c.hps_tls_add_cert(self._ep, name, os.fspath(cert), os.fspath(key))


class TcpAgent(Endpoint):
    """Makes many outbound connections with ``connect``."""

    _role = Role.TCP_AGENT

    def start(self) -> None:
        """Start the loops; then ``connect``."""
        self._start(None, 0)

    def connect(self, host: str, port: int) -> int:
        """Open a connection to ``host:port`` and return its ID at once;
        on_connect, or on_close with op CONNECT, follows. Every ID returned
        gets exactly one on_close. Sending before on_connect raises
        ``ESTATE``."""
        return _c.hpsb_connect(self._ep, host, port)


def _client_args(args: tuple, nargs: int) -> tuple:
    """Client calls take the connection ID optionally: prepend 0 (the
    current connection) when it was left out."""
    return args if len(args) == nargs else (0,) + args


class TcpClient(Endpoint):
    """Owns one outbound connection, made by ``start``.

    Connection methods take the connection ID as for the other roles (so
    one handler serves every role); 0, the default, means the client's
    current connection, and ``send(data)``, ``sendv(buffers)``,
    ``fetch(size)``, ``peek(size)`` and ``send_file(path)`` may leave it
    out.
    """

    _role = Role.TCP_CLIENT

    def start(self, host: str, port: int) -> None:
        """Connect to ``host:port``: on_connect, or on_close with op
        CONNECT, follows."""
        self._start(host, port)

    @overload
    def send(self, data: Buffer) -> None: ...
    @overload
    def send(self, conn: int, data: Buffer) -> None: ...

    def send(self, *args: Any) -> None:  # type: ignore[override]
        """``send(data)`` or ``send(conn, data)``."""
        conn, data = _client_args(args, 2)
        _send(self._ep, conn, data)

    @overload
    def sendv(self, buffers: Iterable[Buffer]) -> None: ...
    @overload
    def sendv(self, conn: int, buffers: Iterable[Buffer]) -> None: ...

    def sendv(self, *args: Any) -> None:  # type: ignore[override]
        """``sendv(buffers)`` or ``sendv(conn, buffers)``."""
        conn, buffers = _client_args(args, 2)
        _sendv(self._ep, conn, buffers)

    @overload
    def fetch(self, size: int) -> bytes: ...
    @overload
    def fetch(self, conn: int, size: int) -> bytes: ...

    def fetch(self, *args: Any) -> bytes:  # type: ignore[override]
        """``fetch(size)`` or ``fetch(conn, size)``."""
        conn, size = _client_args(args, 2)
        return _fetch(self._ep, conn, size)

    @overload
    def peek(self, size: int) -> bytes: ...
    @overload
    def peek(self, conn: int, size: int) -> bytes: ...

    def peek(self, *args: Any) -> bytes:  # type: ignore[override]
        """``peek(size)`` or ``peek(conn, size)``."""
        conn, size = _client_args(args, 2)
        return _peek(self._ep, conn, size)

    def send_file(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """``send_file(path, offset=0, length=-1)``, optionally with the
        connection ID first."""
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            Endpoint.send_file(self, *args, **kwargs)
        else:
            Endpoint.send_file(self, 0, *args, **kwargs)

    def disconnect(self, conn: int = 0, force: bool = False) -> None:
        Endpoint.disconnect(self, conn, force)

    def pause_receive(self, conn: int = 0, pause: bool = True) -> None:
        Endpoint.pause_receive(self, conn, pause)

    def resume_receive(self, conn: int = 0) -> None:
        Endpoint.resume_receive(self, conn)

    def local_address(self, conn: int = 0) -> Tuple[str, int]:
        return Endpoint.local_address(self, conn)

    def remote_address(self, conn: int = 0) -> Tuple[str, int]:
        return Endpoint.remote_address(self, conn)

    def get_extra(self, conn: int = 0) -> int:
        return Endpoint.get_extra(self, conn)

    def unsent(self, conn: int = 0) -> int:
        return Endpoint.unsent(self, conn)


# ---- UDP ------------------------------------------------------------------


class UdpServer(TcpServer):
    """One UDP port; each peer address is a connection: ``on_accept`` on
    its first datagram, one ``on_receive`` per datagram, ``send`` to that
    peer, ``disconnect``, ``on_close``. A peer silent for
    ``udp_detect_interval`` x ``udp_detect_attempts`` ms is closed with
    ``EUDPIDLE``; one sending a datagram over ``udp_max_datagram`` with
    ``EDGRAMSIZE``. Push model only."""

    _role = Role.UDP_SERVER


class UdpClient(TcpClient):
    """One connected UDP peer, made by ``start``; on_connect and
    on_handshake follow, and it may send at once. An ICMP port unreachable
    closes it (``-errno.ECONNREFUSED``); detection as for UdpServer (an
    idle client sends heartbeats that a UdpServer answers)."""

    _role = Role.UDP_CLIENT

    def send_file(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise Error(_c.HPS_EROLE)


class _Datagrams(TcpClient):
    """What UdpCast and UdpNode share: one socket as one connection (ID 0),
    ``send_to`` anywhere, multicast membership, the bound address,
    and the ``interface`` keyword (the multicast interface)."""

    def __init__(self, handler: Optional[object] = None,
                 interface: Optional[str] = None, **options: Any) -> None:
        super().__init__(handler, **options)
        if interface is not None:
            _c.hps_cast_interface(self._ep, interface)

    def send_to(self, host: str, port: int, data: Buffer) -> None:
        """Send one datagram to ``host:port``. Raises ``EADDR`` for an
        unresolvable host, ``EDGRAMSIZE`` over ``udp_max_datagram``."""
        _c.hpsb_send_to(self._ep, host, port, data)

    def join_group(self, group: str, iface: Optional[str] = None) -> None:
        """Join multicast ``group`` on interface ``iface`` (an address, or
        None for the system's choice)."""
        _c.hps_join_group(self._ep, group, iface)

    def leave_group(self, group: str, iface: Optional[str] = None) -> None:
        """Leave multicast ``group``."""
        _c.hps_leave_group(self._ep, group, iface)

    @property
    def listen_address(self) -> Tuple[str, int]:
        """``(host, port)`` the socket is bound to."""
        return _c.hpsb_listen_address(self._ep)

    def send_file(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise Error(_c.HPS_EROLE)


class UdpCast(_Datagrams):
    """Sends to and receives from a multicast group (or, with
    ``udp_cast_mode=CastMode.BROADCAST``, a broadcast address).
    ``on_receive(cast, conn, data, (host, port))`` names each sender.
    ``interface`` (constructor keyword) picks the multicast interface."""

    _role = Role.UDP_CAST

    def start(self, host: str, port: int = 0) -> None:  # type: ignore[override]
        """Bind ``port`` (0: a free one; ``reuse_addr`` lets several casts
        share it), join group ``host`` (or allow broadcast to it) and make
        ``host:port`` the destination of ``send``."""
        self._start(host, port)


class UdpNode(_Datagrams):
    """Connectionless: ``send_to`` any ``host:port``;
    ``on_receive(node, conn, data, (host, port))`` names each sender.
    ``send`` without an address raises ``EROLE``."""

    _role = Role.UDP_NODE

    def start(self, host: Optional[str] = None, port: int = 0) -> None:  # type: ignore[override]
        """Bind ``host:port`` (None: every IPv4 address; port 0: a free
        one)."""
        self._start(host, port)
