// IListener.cs - the handler interface: one method per event, each with a
// default that does nothing, so a listener implements only what it needs.
// An endpoint enables only the events its listener implements
// (HPS_OPT_EVENTS), so an unimplemented event costs no native-to-managed
// transition at all.
using System;
using System.Net;

namespace HpSock
{
    /// <summary>Receives an endpoint's events. Every method has a default
    /// implementation returning <see cref="HandleResult.Ok"/>; implement the
    /// ones you need. Only the events a listener implements are enabled (see
    /// <see cref="TcpEndpoint.Events"/>).</summary>
    /// <remarks>
    /// Events of one connection never run concurrently and arrive in order,
    /// on that connection's loop thread; events of different connections may
    /// run concurrently. Every accepted or connected connection gets exactly
    /// one <see cref="OnClose"/>; after <see cref="OnShutdown"/> no event
    /// arrives. Spans are valid only during the call. Any endpoint method may
    /// be called from a handler, including <see cref="TcpEndpoint.Stop"/> and
    /// <see cref="TcpEndpoint.Dispose()"/> (both then finish asynchronously).
    /// An exception thrown by a handler is caught, reported through
    /// <see cref="TcpEndpoint.HandlerException"/> (or standard error), and
    /// treated as <see cref="HandleResult.Error"/>. A UDP cast's or node's one
    /// connection is its socket: Error (or an exception) from its receive and
    /// send handlers closes nothing, and it goes on receiving.
    /// </remarks>
    public interface IListener
    {
        /// <summary>A socket was made, before listen (server: on the thread
        /// calling Start, <paramref name="connId"/> 0) or connect (agent and
        /// client: on the connection's loop).</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection, or 0 for a server's listening socket.</param>
        /// <param name="socket">The socket's file descriptor.</param>
        /// <returns><see cref="HandleResult.Error"/> aborts the listen or connect.</returns>
        HandleResult OnPrepare(TcpEndpoint sender, ulong connId, nint socket) => HandleResult.Ok;

        /// <summary>A server accepted a connection.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The new connection.</param>
        /// <returns><see cref="HandleResult.Error"/> refuses it (no close event follows).</returns>
        HandleResult OnAccept(TcpEndpoint sender, ulong connId) => HandleResult.Ok;

        /// <summary>An agent or client connection was established.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <returns><see cref="HandleResult.Error"/> closes it.</returns>
        HandleResult OnConnect(TcpEndpoint sender, ulong connId) => HandleResult.Ok;

        /// <summary>A connection is ready for traffic (after accept or connect).</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <returns><see cref="HandleResult.Error"/> closes it.</returns>
        HandleResult OnHandShake(TcpEndpoint sender, ulong connId) => HandleResult.Ok;

        /// <summary>Push model: bytes arrived. Pack model: one whole frame body
        /// arrived.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <param name="data">The bytes; valid only during the call.</param>
        /// <returns><see cref="HandleResult.Error"/> closes the connection.</returns>
        HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data) => HandleResult.Ok;

        /// <summary>Pull model: bytes arrived; <paramref name="available"/> bytes
        /// wait in total. Take them with <see cref="TcpEndpoint.TryFetch"/> or
        /// look with <see cref="TcpEndpoint.TryPeek"/>.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <param name="available">Bytes waiting.</param>
        /// <returns><see cref="HandleResult.Error"/> closes the connection.</returns>
        HandleResult OnReceive(TcpEndpoint sender, ulong connId, long available) => HandleResult.Ok;

        /// <summary>Bytes were handed to the kernel (pack model: the body,
        /// without its header). Enabling this event turns off the direct-write
        /// fast path, so implement it only when needed.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <param name="data">The bytes sent; valid only during the call.</param>
        /// <returns><see cref="HandleResult.Error"/> closes the connection.</returns>
        HandleResult OnSend(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data) => HandleResult.Ok;

        /// <summary>A connection closed; the last event of that connection.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection (its ID is no longer valid).</param>
        /// <param name="operation">The operation during which it closed.</param>
        /// <param name="error"><see cref="HpSockError.None"/> for a normal close,
        /// else a library or system (-errno) error.</param>
        /// <returns>Ignored.</returns>
        HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error) => HandleResult.Ok;

        /// <summary>The endpoint stopped; no event follows.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <returns>Ignored.</returns>
        HandleResult OnShutdown(TcpEndpoint sender) => HandleResult.Ok;

        /// <summary>A connection's unsent bytes rose above
        /// <see cref="TcpEndpoint.SendHighWater"/>: stop producing for it (or let
        /// <see cref="TcpEndpoint.AutoPause"/> pause its reading) until
        /// <see cref="OnLowWater"/>. Comes once per crossing;
        /// <see cref="TcpEndpoint.GetUnsent"/> reads the count at any time.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <param name="unsent">Bytes accepted for sending and not yet handed to the kernel.</param>
        /// <returns>Ignored.</returns>
        HandleResult OnHighWater(TcpEndpoint sender, ulong connId, long unsent) => HandleResult.Ok;

        /// <summary>After <see cref="OnHighWater"/>: the connection's unsent bytes
        /// fell to <see cref="TcpEndpoint.SendLowWater"/> or below; it is writable
        /// again.</summary>
        /// <param name="sender">The endpoint.</param>
        /// <param name="connId">The connection.</param>
        /// <param name="unsent">Bytes accepted for sending and not yet handed to the kernel.</param>
        /// <returns>Ignored.</returns>
        HandleResult OnLowWater(TcpEndpoint sender, ulong connId, long unsent) => HandleResult.Ok;

        /// <summary>UDP cast and node: a datagram arrived from <paramref name="from"/>.
        /// The default passes it to <see cref="OnReceive(TcpEndpoint, ulong, ReadOnlySpan{byte})"/>.
        /// The result is ignored: the endpoint's one connection is its socket, which stays open.</summary>
        HandleResult OnReceiveFrom(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data, IPEndPoint from) =>
            OnReceive(sender, connId, data);

        /// <summary>UDP cast and node: a datagram to <paramref name="to"/> went to the kernel.
        /// The default passes it to <see cref="OnSend(TcpEndpoint, ulong, ReadOnlySpan{byte})"/>.</summary>
        HandleResult OnSendTo(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data, IPEndPoint to) =>
            OnSend(sender, connId, data);

        /// <summary>UDP cast and node: a datagram was dropped and the endpoint goes on.
        /// <see cref="SocketOperation.Receive"/>: one from <paramref name="address"/> was larger
        /// than the max datagram (<see cref="HpSockError.DatagramSize"/>);
        /// <see cref="SocketOperation.Send"/>: one to <paramref name="address"/> failed after
        /// the send returned.</summary>
        HandleResult OnDatagramError(TcpEndpoint sender, ulong connId, SocketOperation operation,
            HpSockError error, IPEndPoint address) => HandleResult.Ok;
    }
}
