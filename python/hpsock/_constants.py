"""Enumerations of the C ABI (hpsock.h), as IntEnums.

Values come from the compiled module, so they always match the library
this package carries.
"""

from enum import IntEnum

from . import _hpsock_swig as _c

__all__ = ["Result", "OK", "IGNORE", "ERROR", "Role", "Model", "Event",
           "Op", "State", "Option", "CastMode", "StrOption", "TlsVerify",
           "TlsInfo", "TLS_V1_2", "TLS_V1_3", "EVENTS_ALL", "Counter"]


class Result(IntEnum):
    """What an event handler returns (``None`` counts as ``OK``)."""

    OK = _c.HPS_HR_OK
    """Go on."""
    IGNORE = _c.HPS_HR_IGNORE
    """Go on; the event needs nothing more from hpsock."""
    ERROR = _c.HPS_HR_ERROR
    """PREPARE: abort the listen/connect; ACCEPT: refuse the connection;
    CONNECT, HANDSHAKE, RECEIVE, SEND: close the connection with error
    ``HPS_EHANDLER`` (except RECEIVE and SEND of a UdpCast or UdpNode,
    whose one connection is the socket: nothing closes and it keeps
    receiving); HIGH_WATER, LOW_WATER: close the connection (op SEND).
    Ignored for CLOSE and SHUTDOWN."""


OK = Result.OK
IGNORE = Result.IGNORE
ERROR = Result.ERROR


class Role(IntEnum):
    """An endpoint's role."""

    TCP_SERVER = _c.HPS_TCP_SERVER
    TCP_AGENT = _c.HPS_TCP_AGENT
    TCP_CLIENT = _c.HPS_TCP_CLIENT
    UDP_SERVER = _c.HPS_UDP_SERVER
    UDP_CLIENT = _c.HPS_UDP_CLIENT
    UDP_CAST = _c.HPS_UDP_CAST
    UDP_NODE = _c.HPS_UDP_NODE


class Model(IntEnum):
    """Receive model (option ``recv_model``)."""

    PUSH = _c.HPS_MODEL_PUSH
    """Every read is delivered to ``on_receive`` as bytes."""
    PULL = _c.HPS_MODEL_PULL
    """``on_receive`` gets the number of bytes waiting; take them with
    ``fetch``/``peek``."""
    PACK = _c.HPS_MODEL_PACK
    """``on_receive`` gets one whole length-prefixed frame body."""


class Event(IntEnum):
    """Event types; ``1 << Event.X`` is its bit in the ``events`` option."""

    PREPARE = _c.HPS_EV_PREPARE
    ACCEPT = _c.HPS_EV_ACCEPT
    CONNECT = _c.HPS_EV_CONNECT
    HANDSHAKE = _c.HPS_EV_HANDSHAKE
    RECEIVE = _c.HPS_EV_RECEIVE
    SEND = _c.HPS_EV_SEND
    CLOSE = _c.HPS_EV_CLOSE
    SHUTDOWN = _c.HPS_EV_SHUTDOWN
    HIGH_WATER = _c.HPS_EV_HIGH_WATER
    """A connection's unsent bytes rose above ``send_high_water``."""
    LOW_WATER = _c.HPS_EV_LOW_WATER
    """After a HIGH_WATER, they fell to ``send_low_water`` or below."""

    @property
    def bit(self) -> int:
        """This event's bit in the ``events`` option."""
        return 1 << self.value


EVENTS_ALL = _c.HPS_EVENTS_ALL


class Op(IntEnum):
    """The operation during which a connection closed (``on_close``)."""

    UNKNOWN = _c.HPS_OP_UNKNOWN
    ACCEPT = _c.HPS_OP_ACCEPT
    CONNECT = _c.HPS_OP_CONNECT
    SEND = _c.HPS_OP_SEND
    RECEIVE = _c.HPS_OP_RECEIVE
    """Includes a normal close by the peer (error 0)."""
    CLOSE = _c.HPS_OP_CLOSE
    """Closed locally: disconnect or stop (error 0)."""


class State(IntEnum):
    """An endpoint's life-cycle state."""

    CREATED = _c.HPS_STATE_CREATED
    STARTED = _c.HPS_STATE_STARTED
    STOPPING = _c.HPS_STATE_STOPPING
    STOPPED = _c.HPS_STATE_STOPPED


class Option(IntEnum):
    """Option keys for ``getopt``/``setopt`` (each is also a keyword
    argument and a property of the endpoints, named in lower case)."""

    WORKERS = _c.HPS_OPT_WORKERS
    RECV_MODEL = _c.HPS_OPT_RECV_MODEL
    SNDBUF = _c.HPS_OPT_SNDBUF
    RCVBUF = _c.HPS_OPT_RCVBUF
    MAX_CONNECTIONS = _c.HPS_OPT_MAX_CONNECTIONS
    KEEPALIVE_TIME = _c.HPS_OPT_KEEPALIVE_TIME
    KEEPALIVE_INTERVAL = _c.HPS_OPT_KEEPALIVE_INTERVAL
    NODELAY = _c.HPS_OPT_NODELAY
    REUSE_ADDR = _c.HPS_OPT_REUSE_ADDR
    IPV6_ONLY = _c.HPS_OPT_IPV6_ONLY
    MAX_SEND_QUEUE = _c.HPS_OPT_MAX_SEND_QUEUE
    FREE_POOL = _c.HPS_OPT_FREE_POOL
    CONNECT_TIMEOUT = _c.HPS_OPT_CONNECT_TIMEOUT
    EVENTS = _c.HPS_OPT_EVENTS
    BACKLOG = _c.HPS_OPT_BACKLOG
    PACK_FLAG = _c.HPS_OPT_PACK_FLAG
    PACK_MAX = _c.HPS_OPT_PACK_MAX
    PULL_MAX = _c.HPS_OPT_PULL_MAX
    SILENCE_TIMEOUT = _c.HPS_OPT_SILENCE_TIMEOUT
    SEND_HIGH_WATER = _c.HPS_OPT_SEND_HIGH_WATER
    SEND_LOW_WATER = _c.HPS_OPT_SEND_LOW_WATER
    AUTO_PAUSE = _c.HPS_OPT_AUTO_PAUSE
    CLOSE_TIMEOUT = _c.HPS_OPT_CLOSE_TIMEOUT
    UDP_MAX_DATAGRAM = _c.HPS_OPT_UDP_MAX_DATAGRAM
    UDP_DETECT_INTERVAL = _c.HPS_OPT_UDP_DETECT_INTERVAL
    UDP_DETECT_ATTEMPTS = _c.HPS_OPT_UDP_DETECT_ATTEMPTS
    UDP_CAST_MODE = _c.HPS_OPT_UDP_CAST_MODE
    UDP_MULTICAST_TTL = _c.HPS_OPT_UDP_MULTICAST_TTL
    UDP_MULTICAST_LOOP = _c.HPS_OPT_UDP_MULTICAST_LOOP
    TLS = _c.HPS_OPT_TLS
    TLS_VERIFY = _c.HPS_OPT_TLS_VERIFY
    TLS_MIN_VERSION = _c.HPS_OPT_TLS_MIN_VERSION
    TLS_SESSION_CACHE = _c.HPS_OPT_TLS_SESSION_CACHE
    TLS_HANDSHAKE_TIMEOUT = _c.HPS_OPT_TLS_HANDSHAKE_TIMEOUT


class Counter(IntEnum):
    """Endpoint-wide counters of what overload and hostile peers cost,
    since the endpoint was created (they survive restarts); read with
    ``endpoint.counter(kind)``."""

    ACCEPT_ERRORS = _c.HPS_CNT_ACCEPT_ERRORS
    """Accept failures (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...); each pauses
    accepting on that loop for a back-off."""
    ACCEPT_SHED = _c.HPS_CNT_ACCEPT_SHED
    """Connections accepted and closed at once (no descriptor or memory
    left, or ``max_connections`` reached); never reported to on_accept."""
    CLOSE_TIMEOUTS = _c.HPS_CNT_CLOSE_TIMEOUTS
    """Graceful closes forced at ``close_timeout`` (``ECLOSETIMEOUT``)."""
    AUTO_PAUSES = _c.HPS_CNT_AUTO_PAUSES
    """Automatic pauses of reading (``auto_pause``)."""
    UDP_PEERS_REFUSED = _c.HPS_CNT_UDP_PEERS_REFUSED
    """UdpServer: datagrams from new peer addresses dropped because the
    peer table was full."""
    UDP_PEERS_EVICTED = _c.HPS_CNT_UDP_PEERS_EVICTED
    """UdpServer: unconfirmed peers evicted for a new address."""


class CastMode(IntEnum):
    """Option ``udp_cast_mode`` of UdpCast (and UdpNode)."""

    MULTICAST = _c.HPS_CAST_MULTICAST
    """``start``'s host is a multicast group, joined at start."""
    BROADCAST = _c.HPS_CAST_BROADCAST
    """``start``'s host is a broadcast address (SO_BROADCAST)."""


class StrOption(IntEnum):
    """String-valued option keys (TLS); each is also a keyword argument and
    a property of the endpoints, named in lower case. ``None`` or ``""``
    clears one."""

    TLS_CERT_FILE = _c.HPS_OPT_TLS_CERT_FILE
    """Certificate (chain) PEM file."""
    TLS_KEY_FILE = _c.HPS_OPT_TLS_KEY_FILE
    """Private key PEM file (if encrypted, set TLS_KEY_PASSWORD)."""
    TLS_CERT_PEM = _c.HPS_OPT_TLS_CERT_PEM
    """Certificate (chain) as PEM text."""
    TLS_KEY_PEM = _c.HPS_OPT_TLS_KEY_PEM
    """Private key as PEM text (write-only)."""
    TLS_CA_FILE = _c.HPS_OPT_TLS_CA_FILE
    """Trusted CAs, PEM file (default: the system's store)."""
    TLS_CA_PATH = _c.HPS_OPT_TLS_CA_PATH
    """Trusted CAs, hashed directory."""
    TLS_CA_PEM = _c.HPS_OPT_TLS_CA_PEM
    """Trusted CAs as PEM text."""
    TLS_CIPHERS = _c.HPS_OPT_TLS_CIPHERS
    """TLS 1.2 cipher list (OpenSSL syntax)."""
    TLS_CIPHERSUITES = _c.HPS_OPT_TLS_CIPHERSUITES
    """TLS 1.3 ciphersuites (OpenSSL syntax)."""
    TLS_SNI = _c.HPS_OPT_TLS_SNI
    """Agent/client: the server name sent and verified (default: the host
    given to connect/start when it is a name)."""
    TLS_KEY_PASSWORD = _c.HPS_OPT_TLS_KEY_PASSWORD
    """Passphrase of an encrypted private key. Write-only: reading it
    raises ``EINVAL``."""


class TlsVerify(IntEnum):
    """Option ``tls_verify``."""

    NONE = _c.HPS_TLS_VERIFY_NONE
    """No check (a server asks for no client certificate)."""
    PEER = _c.HPS_TLS_VERIFY_PEER
    """The peer's certificate must chain to a trusted CA (and, for a
    client, match the server name). Default for agents and clients."""
    REQUIRE = _c.HPS_TLS_VERIFY_REQUIRE
    """As PEER; a server also fails a client without a certificate."""


class TlsInfo(IntEnum):
    """What ``tls_info`` reads."""

    ERROR = _c.HPS_TLS_INFO_ERROR
    VERSION = _c.HPS_TLS_INFO_VERSION
    CIPHER = _c.HPS_TLS_INFO_CIPHER
    SERVER_NAME = _c.HPS_TLS_INFO_SERVER_NAME
    PEER_SUBJECT = _c.HPS_TLS_INFO_PEER_SUBJECT
    RESUMED = _c.HPS_TLS_INFO_RESUMED
    CONFIG_ERROR = _c.HPS_TLS_INFO_CONFIG_ERROR


TLS_V1_2: int = _c.HPS_TLS_V1_2
"""``tls_min_version`` value: TLS 1.2 (the default floor)."""
TLS_V1_3: int = _c.HPS_TLS_V1_3
"""``tls_min_version`` value: TLS 1.3 only."""
