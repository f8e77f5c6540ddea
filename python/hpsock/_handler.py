"""The Handler base class: one method per event, default no-ops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple, Union

from ._constants import Event

if TYPE_CHECKING:  # pragma: no cover
    from ._endpoint import Endpoint

__all__ = ["Handler"]

_Ret = Optional[int]


class Handler:
    """Receives an endpoint's events. Subclass it and override what you need.

    Every method runs on one of the endpoint's loop threads (a server's
    ``on_prepare`` on the thread calling ``start``), holding the GIL.
    Events of one connection never run concurrently and arrive in order;
    events of different connections may run on different threads.

    A method returns ``None`` or ``hpsock.OK`` to go on, ``hpsock.IGNORE``,
    or ``hpsock.ERROR`` (see :class:`hpsock.Result`). An exception is
    reported through ``sys.unraisablehook`` and counts as ``ERROR`` for
    that connection; the endpoint goes on. On a UdpCast or UdpNode, whose
    one connection is the socket, an exception (or ERROR) in
    ``on_receive``/``on_send`` is only reported: the endpoint keeps
    receiving.

    Only the events whose methods a subclass overrides are delivered (plus
    CLOSE and SHUTDOWN, which always are, but cost nothing when not
    overridden): an echo server that overrides only ``on_receive`` never
    takes the GIL for anything else, and its sends keep hpsock's direct
    write path, which SEND events would turn off.

    ``endpoint`` is the TcpServer/TcpAgent/TcpClient the event belongs to
    and ``conn`` the connection's ID. The data passed in is a copy: keep it
    as long as you like.
    """

    def on_prepare(self, endpoint: "Endpoint", conn: int, fd: int) -> _Ret:
        """The socket ``fd`` was made, before listen (server, ``conn`` 0) or
        connect (agent, client). ERROR aborts the listen/connect."""
        return None

    def on_accept(self, endpoint: "Endpoint", conn: int) -> _Ret:
        """A server accepted ``conn``. ERROR refuses it (no on_close
        follows)."""
        return None

    def on_connect(self, endpoint: "Endpoint", conn: int) -> _Ret:
        """An agent's or client's connection ``conn`` is established."""
        return None

    def on_handshake(self, endpoint: "Endpoint", conn: int) -> _Ret:
        """``conn`` is ready for traffic (after on_accept or on_connect)."""
        return None

    def on_receive(self, endpoint: "Endpoint", conn: int,
                   data: Union[bytes, int]) -> _Ret:
        """Data arrived on ``conn``. Push model: ``data`` is the bytes read.
        Pack model: one whole frame body. Pull model: an int, the number of
        bytes waiting in total; take them with ``endpoint.fetch``."""
        return None

    def on_send(self, endpoint: "Endpoint", conn: int, data: bytes) -> _Ret:
        """``data`` was handed to the kernel (pack model: the body, without
        its header)."""
        return None

    def on_close(self, endpoint: "Endpoint", conn: int, op: int,
                 error: int) -> _Ret:
        """``conn`` closed during operation ``op`` (:class:`hpsock.Op`);
        ``error`` is 0 for a normal close, else an error code
        (``hpsock.err_name(error)``). Every accepted or connected
        connection gets exactly one on_close."""
        return None

    def on_shutdown(self, endpoint: "Endpoint") -> _Ret:
        """The endpoint stopped; no event follows."""
        return None

    def on_high_water(self, endpoint: "Endpoint", conn: int,
                      unsent: int) -> _Ret:
        """``conn``'s unsent bytes rose above ``send_high_water``: the peer
        reads slower than this side sends. Stop producing for it until
        ``on_low_water``. Comes once per crossing, after the handler whose
        send crossed has returned (so a handler that sends in a loop
        checks ``endpoint.unsent(conn)`` itself); ``unsent`` is the count
        when it is delivered. With ``auto_pause`` reading from ``conn`` is
        already paused. ERROR or an exception closes ``conn`` (op SEND,
        ``EHANDLER``), as in the other handlers."""
        return None

    def on_low_water(self, endpoint: "Endpoint", conn: int,
                     unsent: int) -> _Ret:
        """After an ``on_high_water``, ``conn``'s unsent bytes fell to
        ``send_low_water`` or below (``unsent``): it is writable again
        (and an automatic pause is over). ERROR or an exception closes
        ``conn``, as for ``on_high_water``."""
        return None

    def on_error(self, endpoint: "Endpoint", conn: int, op: int, error: int,
                 address: Tuple[str, int]) -> _Ret:
        """UdpCast and UdpNode only: a datagram was dropped. ``op``
        RECEIVE: one from ``address`` was larger than ``udp_max_datagram``
        (``error`` EDGRAMSIZE); SEND: one to ``address`` failed after
        ``send``/``send_to`` returned (``error`` says why). The endpoint
        goes on.

        On UdpCast and UdpNode, ``on_receive`` and ``on_send`` take a fifth
        argument, ``address``: the ``(host, port)`` the datagram came from
        or went to."""
        return None


_METHODS = (
    (Event.PREPARE, "on_prepare"),
    (Event.ACCEPT, "on_accept"),
    (Event.CONNECT, "on_connect"),
    (Event.HANDSHAKE, "on_handshake"),
    (Event.RECEIVE, "on_receive"),
    (Event.SEND, "on_send"),
    (Event.CLOSE, "on_close"),
    (Event.SHUTDOWN, "on_shutdown"),
    (Event.HIGH_WATER, "on_high_water"),
    (Event.LOW_WATER, "on_low_water"),
)


def bind_handler(handler: object) -> Tuple[tuple, int]:
    """The handler's overridden methods as a tuple indexed by event type
    (None where there is nothing to call; slot 0 is on_error), and the
    matching events mask."""
    fns: list = [None] * (max(Event) + 1)
    mask = 0
    for event, name in _METHODS:
        method = getattr(handler, name, None)
        if method is None or not callable(method):
            continue
        if getattr(method, "__func__", None) is getattr(Handler, name):
            continue  # the default no-op
        fns[event] = method
        mask |= 1 << event
    method = getattr(handler, "on_error", None)
    if (method is not None and callable(method) and
            getattr(method, "__func__", None) is not Handler.on_error):
        fns[0] = method  # slot 0: failed datagrams (UDP cast/node)
        mask |= (1 << Event.RECEIVE) | (1 << Event.SEND)
    return tuple(fns), mask
