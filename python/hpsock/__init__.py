"""hpsock: high-performance TCP and UDP for Python, on hpsock's libuv C core.

An endpoint (TcpServer, TcpAgent, TcpClient) runs its connections on C loop
threads and tells a :class:`Handler` what happens; connections are known by
integer IDs::

    import hpsock

    class Echo(hpsock.Handler):
        def on_receive(self, server, conn, data):
            server.send(conn, data)

    with hpsock.TcpServer(Echo(), workers=1) as server:
        server.start("127.0.0.1", 8000)
        server.wait()

Receive models (option ``recv_model``): PUSH hands every read to
``on_receive`` as bytes, PULL tells how many bytes wait (take them with
``fetch``/``peek``), PACK hands one whole length-prefixed frame at a time.
Failures raise :class:`Error`, which carries the code and its name.
"""

from . import _hpsock_swig as _c
from ._constants import (ERROR, EVENTS_ALL, IGNORE, OK, TLS_V1_2, TLS_V1_3,
                         CastMode, Counter, Event, Model, Op, Option, Result,
                         Role, State, StrOption, TlsInfo, TlsVerify)
from ._endpoint import (Endpoint, Stats, TcpAgent, TcpClient, TcpServer,
                        UdpCast, UdpClient, UdpNode, UdpServer)
from ._errors import (EADDR, EAGAIN, ECLOSETIMEOUT, EDGRAMSIZE, EFILE,
                      EHANDLE, EHANDLER, EINLOOP, EUDPIDLE,
                      EINVAL, ELIMIT, EMODEL, ENOMEM, ENOTFOUND, EPACKEMPTY,
                      EPACKFLAG, EPACKSIZE, EPULLFULL, ESENDQ, ESILENCE,
                      ESTATE, ESTOPPING, ETIMEDOUT, EROLE, ENOTLS, ETLS,
                      ETLSALERT, ETLSCONFIG, ETLSEOF, ETLSNOTTLS, ETLSVERIFY,
                      Error, err_name, strerror)
from ._handler import Handler

__version__: str = _c.hps_version()
"""The version of the hpsock C library this package carries."""

version_hex: int = _c.hps_version_hex()
"""``(major << 16) | (minor << 8) | patch`` of that library."""

__all__ = [
    "Handler", "Endpoint", "TcpServer", "TcpAgent", "TcpClient", "Stats",
    "UdpServer", "UdpClient", "UdpCast", "UdpNode", "CastMode",
    "EDGRAMSIZE", "EUDPIDLE",
    "Error", "err_name", "strerror",
    "Result", "OK", "IGNORE", "ERROR", "Role", "Model", "Event", "Op",
    "State", "Option", "EVENTS_ALL",
    "EINVAL", "EHANDLE", "ENOTFOUND", "ESTATE", "EROLE", "EMODEL", "ENOMEM",
    "ESENDQ", "ELIMIT", "EINLOOP", "EHANDLER", "EADDR", "ESTOPPING",
    "ETIMEDOUT", "EAGAIN", "EPACKFLAG", "EPACKSIZE", "EPACKEMPTY",
    "EPULLFULL", "ESILENCE", "EFILE", "ECLOSETIMEOUT", "Counter", "version_hex",
    "StrOption", "TlsVerify", "TlsInfo", "TLS_V1_2", "TLS_V1_3",
    "ETLS", "ETLSVERIFY", "ETLSCONFIG", "ETLSEOF", "ETLSNOTTLS", "ETLSALERT",
    "ENOTLS",
]
