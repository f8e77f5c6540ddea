// TcpAgent.cs - the agent role: many outbound connections.
using System;

namespace HpSock
{
    /// <summary>A TCP agent: makes many outbound connections, spread over its
    /// worker loops.</summary>
    public sealed class TcpAgent : TcpEndpoint
    {
        /// <summary>Creates an agent whose events go to <paramref name="listener"/>.</summary>
        /// <param name="listener">The handler.</param>
        public TcpAgent(IListener listener) : base(EndpointRole.Agent, listener)
        {
        }

        /// <summary>Starts the agent's loops; then connect with
        /// <see cref="Connect"/>.</summary>
        public void Start() => StartCore(null, 0);

        /// <summary>Opens a new connection. Its ID is returned at once; a connect
        /// event or a close event with operation
        /// <see cref="SocketOperation.Connect"/> follows. Sending before the
        /// connect event fails with <see cref="HpSockError.InvalidState"/>.</summary>
        /// <param name="host">A numeric address or a host name (resolved synchronously).</param>
        /// <param name="port">The port, 1..65535.</param>
        /// <returns>The connection's ID.</returns>
        /// <exception cref="HpSockException">For example
        /// <see cref="HpSockError.Address"/>, <see cref="HpSockError.InvalidState"/>
        /// (not started) or <see cref="HpSockError.ConnectionLimit"/>.</exception>
        public ulong Connect(string host, int port)
        {
            int r = ConnectCore(host, port, out ulong id);
            if (r != 0) throw new HpSockException(r, "connect");
            return id;
        }
    }
}
