// UdpTests.cs - the UDP roles: server/client echo, node SendTo with the
// sender's address, cast multicast over loopback, oversize refusal and
// reporting, idle detection.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using HpSock;
using Xunit;

namespace HpSock.Tests;

public class UdpTests
{
    private sealed record Got(string Kind, byte[]? Data, IPEndPoint? Address, HpSockError Error);

    private sealed class Rec : IListener
    {
        private readonly List<Got> _got = new();
        private readonly bool _echo;

        public Rec(bool echo = false) => _echo = echo;

        public Got[] All
        {
            get { lock (_got) return _got.ToArray(); }
        }

        private void Add(Got g)
        {
            lock (_got) _got.Add(g);
        }

        public Got[] Wait(string kind, int n)
        {
            Got[] found = Array.Empty<Got>();
            Deadline.Until(() => (found = All.Where(g => g.Kind == kind).ToArray()).Length >= n, $"{n} {kind}");
            return found;
        }

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
        {
            Add(new Got("receive", data.ToArray(), null, HpSockError.None));
            if (_echo) sender.Send(connId, data);
            return HandleResult.Ok;
        }

        public HandleResult OnReceiveFrom(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data, IPEndPoint from)
        {
            Add(new Got("receive", data.ToArray(), from, HpSockError.None));
            if (_echo) ((UdpNode)sender).SendTo(from.Address.ToString(), from.Port, data);
            return HandleResult.Ok;
        }

        public HandleResult OnDatagramError(TcpEndpoint sender, ulong connId, SocketOperation operation,
            HpSockError error, IPEndPoint address)
        {
            Add(new Got("error", null, address, error));
            return HandleResult.Ok;
        }

        public HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
        {
            Add(new Got("close", null, null, error));
            return HandleResult.Ok;
        }
    }

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void ServerAndClientEcho()
    {
        var srec = new Rec(echo: true);
        var crec = new Rec();
        using var server = new UdpServer(srec) { Workers = 2 };
        server.Start("127.0.0.1", 0);
        using var client = new UdpClient(crec);
        client.Start("127.0.0.1", server.ListenAddress.Port);
        Assert.Equal(EndpointRole.UdpClient, client.Role);
        client.Send(B("ping"));
        client.SendV(0, B("ab"), B("cd")); // one datagram
        Got[] got = crec.Wait("receive", 2);
        Assert.Equal(B("ping"), got[0].Data);
        Assert.Equal(B("abcd"), got[1].Data);
        ulong id = server.GetConnectionIds().Single();
        Assert.Equal(client.GetLocalAddress(0), server.GetRemoteAddress(id));
    }

    [Fact]
    public void NodeSendToCarriesTheSenderAddress()
    {
        var arec = new Rec();
        var brec = new Rec(echo: true);
        using var a = new UdpNode(arec);
        using var b = new UdpNode(brec);
        a.Start("127.0.0.1", 0);
        b.Start("127.0.0.1", 0);
        int bport = b.ListenAddress.Port;
        a.SendTo("127.0.0.1", bport, B("hello"));
        Got back = arec.Wait("receive", 1)[0];
        Assert.Equal(B("hello"), back.Data);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, bport), back.Address);
        Assert.Equal(a.ListenAddress.Port, brec.Wait("receive", 1)[0].Address!.Port);
        var e = Assert.Throws<HpSockException>(() => a.Send(0, B("x")));
        Assert.Equal(HpSockError.WrongRole, e.Error);
        e = Assert.Throws<HpSockException>(() => a.SendTo("no-such-host.invalid", 9, B("x")));
        Assert.Equal(HpSockError.Address, e.Error);
    }

    [Fact]
    public void OversizeIsRefusedAndReported()
    {
        var rec = new Rec();
        using var node = new UdpNode(rec);
        node.SetOption(EndpointOption.UdpMaxDatagram, 16);
        node.Start("127.0.0.1", 0);
        int port = node.ListenAddress.Port;
        var e = Assert.Throws<HpSockException>(() => node.SendTo("127.0.0.1", port, new byte[17]));
        Assert.Equal(HpSockError.DatagramSize, e.Error);
        Assert.Equal("HPS_EDGRAMSIZE", HpSockException.GetName(HpSockError.DatagramSize));
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var to = new IPEndPoint(IPAddress.Loopback, port);
        peer.SendTo(new byte[17], to);
        peer.SendTo(new byte[16], to);
        Got err = rec.Wait("error", 1)[0];
        Assert.Equal(HpSockError.DatagramSize, err.Error);
        Assert.Equal(((IPEndPoint)peer.LocalEndPoint!).Port, err.Address!.Port);
        Assert.Equal(16, rec.Wait("receive", 1)[0].Data!.Length);
    }

    [Fact]
    public void ServerClosesOversizeAndSilentPeers()
    {
        var rec = new Rec();
        using var server = new UdpServer(rec) { Workers = 1 };
        server.SetOption(EndpointOption.UdpMaxDatagram, 32);
        server.SetOption(EndpointOption.UdpDetectInterval, 100);
        server.SetOption(EndpointOption.UdpDetectAttempts, 2);
        server.Start("127.0.0.1", 0);
        var to = new IPEndPoint(IPAddress.Loopback, server.ListenAddress.Port);
        using var big = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        using var quiet = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        big.SendTo(new byte[33], to);
        quiet.SendTo(new byte[1], to);
        var errors = rec.Wait("close", 2).Select(g => g.Error).OrderBy(x => x).ToArray();
        Assert.Equal(new[] { HpSockError.DatagramSize, HpSockError.UdpIdle }.OrderBy(x => x).ToArray(), errors);
    }

    [Fact]
    public void ANodeWhoseReceiveHandlerThrowsIsNotMadeDeaf()
    {
        // Its one connection is the socket: the exception is reported through
        // HandlerException and that datagram is lost, but the node goes on
        // receiving (issue 19, point 7).
        var rec = new ThrowsOnFirst();
        using var node = new UdpNode(rec);
        var reports = new List<HandlerExceptionEventArgs>();
        node.HandlerException += (s, e) =>
        {
            lock (reports) reports.Add(e);
        };
        node.Start("127.0.0.1", 0);
        var to = new IPEndPoint(IPAddress.Loopback, node.ListenAddress.Port);
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        peer.SendTo(B("first"), to);
        Deadline.Until(() => { lock (reports) return reports.Count == 1; }, "the report");
        HandlerExceptionEventArgs r;
        lock (reports) r = reports[0];
        Assert.IsType<InvalidOperationException>(r.Exception);
        Assert.Equal(EventKinds.Receive, r.Event);
        peer.SendTo(B("second"), to);
        Deadline.Until(() => rec.Seen.Contains("second"), "the second datagram");
        Assert.Equal(new[] { "first", "second" }, rec.Seen.ToArray());
        Assert.Equal(0, rec.Closes);
        Assert.Equal(EndpointState.Started, node.State);
    }

    private sealed class ThrowsOnFirst : IListener
    {
        public readonly System.Collections.Concurrent.ConcurrentQueue<string> Seen = new();
        public int Closes;

        public HandleResult OnReceiveFrom(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data, IPEndPoint from)
        {
            string m = Encoding.UTF8.GetString(data);
            Seen.Enqueue(m);
            if (m == "first") throw new InvalidOperationException("from OnReceiveFrom");
            return HandleResult.Ok;
        }

        public HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
        {
            Interlocked.Increment(ref Closes);
            return HandleResult.Ok;
        }
    }

    [Fact]
    public void CastMulticastOverLoopback()
    {
        var arec = new Rec();
        var brec = new Rec();
        using var a = new UdpCast(arec);
        using var b = new UdpCast(brec);
        a.SetInterface("127.0.0.1");
        b.SetInterface("127.0.0.1");
        a.Start("239.255.77.4", 0);
        int port = a.ListenAddress.Port;
        b.Start("239.255.77.4", port);
        a.Send(B("group"));
        Got g = brec.Wait("receive", 1)[0];
        Assert.Equal(B("group"), g.Data);
        Assert.Equal(port, g.Address!.Port);
        b.LeaveGroup("239.255.77.4", "127.0.0.1");
        b.JoinGroup("239.255.77.4", "127.0.0.1");
        var e = Assert.Throws<HpSockException>(() => b.JoinGroup("127.0.0.1"));
        Assert.Equal(HpSockError.Address, e.Error);
    }
}
