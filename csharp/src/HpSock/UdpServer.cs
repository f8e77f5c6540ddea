// UdpServer.cs - the UDP server role: one port, a connection per peer.
using System.Net;

namespace HpSock
{
    /// <summary>A UDP server: one port, a connection per peer address. A new
    /// address's first datagram is <see cref="IListener.OnAccept"/> (then
    /// OnHandShake), every datagram one OnReceive; Send goes to that peer as one
    /// datagram. A peer silent for <see cref="EndpointOption.UdpDetectInterval"/>
    /// x <see cref="EndpointOption.UdpDetectAttempts"/> ms closes with
    /// <see cref="HpSockError.UdpIdle"/>; one sending more than
    /// <see cref="EndpointOption.UdpMaxDatagram"/> bytes with
    /// <see cref="HpSockError.DatagramSize"/>. Push model only.</summary>
    public sealed class UdpServer : TcpEndpoint
    {
        /// <summary>A UDP server whose events go to <paramref name="listener"/>.</summary>
        public UdpServer(IListener listener) : base(EndpointRole.UdpServer, listener)
        {
        }

        /// <summary>Bind host:port (null host: every IPv4 address; port 0: a free one).</summary>
        public void Start(string? host, int port) => StartCore(host, port);

        /// <summary>The bound address.</summary>
        public IPEndPoint ListenAddress => ListenAddressCore();
    }
}
