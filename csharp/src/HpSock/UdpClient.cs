// UdpClient.cs - the UDP client role: one connected peer.
using System;

namespace HpSock
{
    /// <summary>A UDP client: one connected peer, made by <see cref="Start"/>
    /// (OnConnect and OnHandShake follow; it may send at once); ID 0 is its
    /// connection. An ICMP port unreachable closes it with -ECONNREFUSED; idle
    /// detection as for <see cref="UdpServer"/> (an idle client sends heartbeats,
    /// which a UdpServer answers).</summary>
    public sealed class UdpClient : TcpEndpoint
    {
        /// <summary>A UDP client whose events go to <paramref name="listener"/>.</summary>
        public UdpClient(IListener listener) : base(EndpointRole.UdpClient, listener)
        {
        }

        /// <summary>Open the socket connected to host:port.</summary>
        public void Start(string host, int port)
        {
            ArgumentNullException.ThrowIfNull(host);
            StartCore(host, port);
        }

        /// <summary>Send one datagram to the peer.</summary>
        public void Send(ReadOnlySpan<byte> data) => Send(0, data);

        /// <summary>Close the connection.</summary>
        public bool Disconnect() => Disconnect(0, false);
    }
}
