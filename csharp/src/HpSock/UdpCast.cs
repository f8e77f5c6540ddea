// UdpCast.cs - the UDP cast role: a multicast group or broadcast address.
using System;
using System.Net;

namespace HpSock
{
    /// <summary>A UDP cast: sends to and receives from a multicast group (or, with
    /// <see cref="EndpointOption.UdpCastMode"/> 1, a broadcast address). One
    /// connection (ID 0); <see cref="IListener.OnReceiveFrom"/> names each sender.</summary>
    public sealed class UdpCast : TcpEndpoint
    {
        /// <summary>A UDP cast whose events go to <paramref name="listener"/>.</summary>
        public UdpCast(IListener listener) : base(EndpointRole.UdpCast, listener)
        {
        }

        /// <summary>Before start: the interface address to join on and send
        /// multicast from (null: the system's choice).</summary>
        public void SetInterface(string? iface) => CastInterfaceCore(iface);

        /// <summary>Bind port (0: a free one) on every address, join group (or allow
        /// broadcast to it) and make group:port the destination of <see cref="Send"/>.</summary>
        public void Start(string group, int port)
        {
            ArgumentNullException.ThrowIfNull(group);
            StartCore(group, port);
        }

        /// <summary>Send one datagram to the group.</summary>
        public void Send(ReadOnlySpan<byte> data) => Send(0, data);

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
