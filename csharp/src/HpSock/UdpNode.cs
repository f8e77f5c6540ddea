// UdpNode.cs - the UDP node role: connectionless datagrams to anyone.
using System;
using System.Net;

namespace HpSock
{
    /// <summary>A UDP node: connectionless. <see cref="SendTo"/> sends anywhere;
    /// <see cref="IListener.OnReceiveFrom"/> names each sender. One connection
    /// (ID 0) stands for the socket.</summary>
    public sealed class UdpNode : TcpEndpoint
    {
        /// <summary>A UDP node whose events go to <paramref name="listener"/>.</summary>
        public UdpNode(IListener listener) : base(EndpointRole.UdpNode, listener)
        {
        }

        /// <summary>Bind host:port (null host: every IPv4 address; port 0: a free one).</summary>
        public void Start(string? host, int port) => StartCore(host, port);

        /// <summary>Send one datagram to host:port.</summary>
        public void SendTo(string host, int port, ReadOnlySpan<byte> data) => SendToCore(host, port, data);

        /// <summary>Join a multicast group on an interface (null: the system's choice).</summary>
        public void JoinGroup(string group, string? iface = null) => MembershipCore(group, iface, true);

        /// <summary>Leave a multicast group.</summary>
        public void LeaveGroup(string group, string? iface = null) => MembershipCore(group, iface, false);

        /// <summary>The bound address.</summary>
        public IPEndPoint ListenAddress => ListenAddressCore();
    }
}
