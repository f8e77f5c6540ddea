// ApiTests.cs - every operation of the C ABI through the C# API: roles,
// models, options, addresses, extra data, stats, connection lists, stale
// IDs and errors.
using System.Net;
using System.Net.Sockets;
using System.Text;
using HpSock;

namespace HpSock.Tests;

public class ApiTests
{
    private static readonly byte[] Hello = Encoding.ASCII.GetBytes("hello");

    private sealed class ReceiveOnly : IListener
    {
        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data) => HandleResult.Ok;
    }

    private sealed class AcceptOnly : IListener
    {
        public HandleResult OnAccept(TcpEndpoint sender, ulong connId) => HandleResult.Ok;
    }

    private sealed class Nothing : IListener
    {
    }

    private sealed class WaterOnly : IListener
    {
        public HandleResult OnHighWater(TcpEndpoint sender, ulong connId, long unsent) => HandleResult.Ok;

        public HandleResult OnLowWater(TcpEndpoint sender, ulong connId, long unsent) => HandleResult.Ok;
    }

    [Fact]
    public void VersionMatchesThePackage()
    {
        Version? asm = typeof(TcpServer).Assembly.GetName().Version;
        Assert.NotNull(asm);
        Assert.Equal($"{asm!.Major}.{asm.Minor}.{asm.Build}", HpSockLibrary.Version);
        Assert.Equal((asm.Major << 16) | (asm.Minor << 8) | asm.Build, HpSockLibrary.VersionHex);
    }

    [Fact]
    public void NativeLibrariesAreLoadedOnceFromThePackage()
    {
        _ = HpSockLibrary.Version; // through the SWIG glue
        using (var s = new TcpServer(new Nothing())) _ = s.Workers; // straight into libhpsock
        string[] mapped = File.ReadLines("/proc/self/maps")
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 6 && (f[5].Contains("/libhpsock") || f[5].Contains("/libuv")))
            .Select(f => f[5]).Distinct().ToArray();
        string native = Path.Combine("runtimes", "linux-x64", "native");
        Assert.Single(mapped, m => Path.GetFileName(m) == "libhpsock.so");
        Assert.Single(mapped, m => Path.GetFileName(m) == "libhpsock_csharp.so");
        Assert.DoesNotContain(mapped, m => Path.GetFileName(m).StartsWith("libhpsock.so."));
        Assert.All(mapped.Where(m => m.Contains("/libhpsock")), m => Assert.Contains(native, m));
        string carried = Path.Combine(AppContext.BaseDirectory, native, "libuv.so.1");
        if (File.Exists(carried)) Assert.Equal(new[] { carried }, mapped.Where(m => m.Contains("/libuv")).ToArray());
    }

    [Fact]
    public void OnlyTheEventsTheListenerImplementsAreEnabled()
    {
        using (var a = new TcpServer(new ReceiveOnly())) Assert.Equal(EventKinds.Receive, a.Events);
        using (var b = new TcpServer(new AcceptOnly())) Assert.Equal(EventKinds.Accept, b.Events);
        using (var c = new TcpServer(new Nothing())) Assert.Equal(EventKinds.None, c.Events);
        using (var d = new TcpServer(new Recorder()))
            Assert.Equal(EventKinds.All & ~(EventKinds.Close | EventKinds.Shutdown), d.Events);
        using (var w = new TcpServer(new WaterOnly()))
            Assert.Equal(EventKinds.HighWater | EventKinds.LowWater, w.Events);
    }

    [Fact]
    public void EventKindsAllIsTheHeadersEventsAll()
    {
        // hpsock accepts an event mask up to HPS_EVENTS_ALL and no higher: All
        // accepted and All + 1 refused means All is exactly the header's mask.
        using var s = new TcpServer(new Nothing());
        s.SetOption(EndpointOption.Events, (long)EventKinds.All);
        Assert.Equal(EventKinds.All, (EventKinds)s.GetOption(EndpointOption.Events));
        var e = Assert.Throws<HpSockException>(() => s.SetOption(EndpointOption.Events, (long)EventKinds.All + 1));
        Assert.Equal(HpSockError.InvalidArgument, e.Error);
        Assert.Equal(0x7feu, (uint)EventKinds.All); // ten event types, bits 1..10
        Assert.Equal(10, Enum.GetValues<EventKinds>().Count(k => k != EventKinds.None && k != EventKinds.All));
    }

    [Fact]
    public void EveryHeaderErrorAndCounterHasAnEnumValue()
    {
        // hps_err_name names every library code; each must be an HpSockError.
        var named = Enumerable.Range(1, 200).Select(i => -30000 - i)
            .Where(c => HpSockException.GetName(c).StartsWith("HPS_E")).ToArray();
        Assert.Contains((int)HpSockError.CloseTimeout, named);
        Assert.Equal("HPS_ECLOSETIMEOUT", HpSockException.GetName(HpSockError.CloseTimeout));
        Assert.All(named, c => Assert.True(Enum.IsDefined((HpSockError)c), $"{HpSockException.GetName(c)} ({c}) has no HpSockError"));
        Assert.Equal(named.Length, Enum.GetValues<HpSockError>().Count(e => e != HpSockError.None));
        // hps_get_counter knows every EndpointCounter; an unknown one is refused.
        using var s = new TcpServer(new Nothing());
        foreach (EndpointCounter c in Enum.GetValues<EndpointCounter>())
            Assert.Equal(0ul, s.GetCounter(c));
        foreach (int unknown in new[] { 0, -1, 1000 })
            Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => s.GetCounter((EndpointCounter)unknown)).Error);
    }

    [Fact]
    public void FlowControlOptionsRoundTrip()
    {
        using var s = new TcpServer(new Nothing());
        Assert.Equal(1 << 20, s.SendHighWater);
        Assert.Equal(256 << 10, s.SendLowWater);
        Assert.False(s.AutoPause);
        Assert.Equal(TimeSpan.FromSeconds(30), s.CloseTimeout);
        s.SendHighWater = 2 << 20;
        s.SendLowWater = 1 << 20;
        Assert.Equal((2 << 20, 1 << 20), (s.SendHighWater, s.SendLowWater));
        s.SetSendWaterMarks(64 << 20, 32 << 20); // both past the old high
        Assert.Equal((64 << 20, 32 << 20), (s.SendHighWater, s.SendLowWater));
        s.SetSendWaterMarks(4096, 1024); // both below the old low
        Assert.Equal((4096, 1024), (s.SendHighWater, s.SendLowWater));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetSendWaterMarks(1024, 1024));
        s.AutoPause = true;
        Assert.True(s.AutoPause);
        s.CloseTimeout = TimeSpan.FromMilliseconds(1500);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), s.CloseTimeout);
        Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => s.SendHighWater = 0).Error);
        Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => s.SendHighWater = (1L << 30) + 1).Error);
        Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => s.CloseTimeout = TimeSpan.Zero).Error);
        Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => s.SetOption(EndpointOption.AutoPause, 2)).Error);
    }

    [Fact]
    public void TlsKeyPasswordIsWriteOnly()
    {
        using var s = new TcpServer(new Nothing());
        s.SetTlsKeyPassword("secret");
        var e = Assert.Throws<HpSockException>(() => s.GetOption(StringOption.TlsKeyPassword));
        Assert.Equal(HpSockError.InvalidArgument, e.Error);
        s.SetTlsKeyPassword(null); // clears
    }

    [Fact]
    public void OptionsRoundTripAndRangesAreChecked()
    {
        using var s = new TcpServer(new Nothing());
        Assert.Equal(EndpointRole.Server, s.Role);
        Assert.Equal(EndpointState.Created, s.State);
        s.Workers = 3;
        Assert.Equal(3, s.Workers);
        s.ReceiveModel = ReceiveModel.Pull;
        Assert.Equal(ReceiveModel.Pull, s.ReceiveModel);
        s.SendBufferSize = 65536;
        Assert.Equal(65536, s.SendBufferSize);
        s.ReceiveBufferSize = 65536;
        Assert.Equal(65536, s.ReceiveBufferSize);
        s.MaxConnections = 10;
        Assert.Equal(10, s.MaxConnections);
        s.KeepAliveTime = TimeSpan.FromSeconds(30);
        Assert.Equal(TimeSpan.FromSeconds(30), s.KeepAliveTime);
        s.KeepAliveInterval = TimeSpan.FromSeconds(5);
        Assert.Equal(TimeSpan.FromSeconds(5), s.KeepAliveInterval);
        s.NoDelay = false;
        Assert.False(s.NoDelay);
        s.ReuseAddress = false;
        Assert.False(s.ReuseAddress);
        s.IPv6Only = true;
        Assert.True(s.IPv6Only);
        s.MaxSendQueue = 1 << 20;
        Assert.Equal(1 << 20, s.MaxSendQueue);
        s.FreePool = 7;
        Assert.Equal(7, s.FreePool);
        s.ConnectTimeout = TimeSpan.FromMilliseconds(1234);
        Assert.Equal(TimeSpan.FromMilliseconds(1234), s.ConnectTimeout);
        s.Backlog = 16;
        Assert.Equal(16, s.Backlog);
        s.PackFlag = 1023;
        Assert.Equal(1023, s.PackFlag);
        s.PackMaxSize = 4194303;
        Assert.Equal(4194303, s.PackMaxSize);
        s.PullMaxSize = 12345;
        Assert.Equal(12345, s.PullMaxSize);
        s.SilenceTimeout = TimeSpan.FromSeconds(2);
        Assert.Equal(TimeSpan.FromSeconds(2), s.SilenceTimeout);
        s.SetOption(EndpointOption.Backlog, 99);
        Assert.Equal(99, s.GetOption(EndpointOption.Backlog));

        var e = Assert.Throws<HpSockException>(() => s.Workers = 0);
        Assert.Equal(HpSockError.InvalidArgument, e.Error);
        Assert.Equal((int)HpSockError.InvalidArgument, e.Code);
        Assert.Equal("HPS_EINVAL", e.Name);
        Assert.Contains("invalid argument", e.Message);
        Assert.Throws<HpSockException>(() => s.PackFlag = 1024);
        Assert.Throws<HpSockException>(() => s.SetOption((EndpointOption)999, 1));
        Assert.Throws<HpSockException>(() => s.GetOption((EndpointOption)999));
    }

    [Fact]
    public void ErrorNamesAndMessagesCoverLibraryAndSystemErrors()
    {
        Assert.Equal("HPS_ENOTFOUND", HpSockException.GetName(HpSockError.NotFound));
        Assert.Equal("connection not found", HpSockException.GetMessage((int)HpSockError.NotFound));
        Assert.Equal("ECONNRESET", HpSockException.GetName(-104));
        foreach (HpSockError e in Enum.GetValues<HpSockError>().Where(e => e != HpSockError.None))
            Assert.Equal("HPS_E", HpSockException.GetName(e)[..5]);
    }

    [Fact]
    public void OptionsThatAreNotLiveAreRefusedWhileRunning()
    {
        using var s = Net.Server(new Recorder());
        Assert.Equal(EndpointState.Started, s.State);
        var e = Assert.Throws<HpSockException>(() => s.Workers = 1);
        Assert.Equal(HpSockError.InvalidState, e.Error);
        s.Events = EventKinds.Receive; // live
        Assert.Equal(EventKinds.Receive, s.Events);
        s.SetSendWaterMarks(1 << 16, 1 << 12); // live
        Assert.Equal(HpSockError.InvalidState, Assert.Throws<HpSockException>(() => s.AutoPause = true).Error);
        Assert.Equal(HpSockError.InvalidState, Assert.Throws<HpSockException>(() => s.CloseTimeout = TimeSpan.FromSeconds(1)).Error);
        e = Assert.Throws<HpSockException>(() => s.Start("127.0.0.1", 0));
        Assert.Equal(HpSockError.InvalidState, e.Error);
    }

    [Fact]
    public void ServerStartErrors()
    {
        using var s = new TcpServer(new Nothing()) { Workers = 1 };
        Assert.Equal(HpSockError.Address, Assert.Throws<HpSockException>(() => s.Start("no.such.host.invalid", 0)).Error);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Start("127.0.0.1", 70000));
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var e = Assert.Throws<HpSockException>(() => s.Start("127.0.0.1", ((IPEndPoint)taken.LocalEndPoint!).Port));
        Assert.Equal("EADDRINUSE", e.Name);
        Assert.NotEqual(EndpointState.Started, s.State);
        s.Start("127.0.0.1", 0); // usable after a failed start
        Assert.Equal(EndpointState.Started, s.State);
    }

    [Fact]
    public void AgentErrors()
    {
        using var a = new TcpAgent(new Nothing()) { Workers = 1 };
        Assert.Equal(HpSockError.InvalidState, Assert.Throws<HpSockException>(() => a.Connect("127.0.0.1", 1)).Error);
        a.Start();
        Assert.Equal(HpSockError.Address, Assert.Throws<HpSockException>(() => a.Connect("", 80)).Error);
        Assert.Equal(HpSockError.Address, Assert.Throws<HpSockException>(() => a.Connect("127.0.0.1", 0)).Error);
    }

    [Fact]
    public void ServerAndClientExchangeAndReportAddresses()
    {
        var srv = new Recorder { Receive = (s, id, d) => s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error };
        using var server = Net.Server(srv);
        IPEndPoint listen = server.ListenAddress;
        Assert.Equal(IPAddress.Loopback, listen.Address);
        Assert.NotEqual(0, listen.Port);

        var cli = new Recorder();
        using var client = new TcpClient(cli);
        client.Start("127.0.0.1", listen.Port);
        ulong cid = cli.WaitFor(EventKinds.Connect).Conn;
        cli.WaitFor(EventKinds.HandShake, cid);
        Assert.Equal(cid, client.ConnectionId);
        ulong sid = srv.WaitFor(EventKinds.Accept).Conn;
        srv.WaitFor(EventKinds.HandShake, sid);

        client.Send(Hello);
        client.Send(Hello, 1, 3);
        Deadline.Until(() => cli.Events.Where(e => e.Kind == EventKinds.Receive).Sum(e => e.Data!.Length) == 8, "echo");
        Assert.Equal("helloell", Encoding.ASCII.GetString(cli.Events.Where(e => e.Kind == EventKinds.Receive).SelectMany(e => e.Data!).ToArray()));

        Assert.Equal(listen.Port, server.GetLocalAddress(sid).Port);
        Assert.Equal(client.GetLocalAddress(0), server.GetRemoteAddress(sid));
        Assert.Equal(server.GetLocalAddress(sid), client.GetRemoteAddress(cid));
        Assert.Equal(1, server.ConnectionCount);
        Assert.Equal(new[] { sid }, server.GetConnectionIds());
        Assert.Equal(new[] { cid }, client.GetConnectionIds());

        // Prepare ran for the listening socket (conn 0) and the client's socket.
        Ev sp = srv.WaitFor(EventKinds.Prepare);
        Assert.Equal(0ul, sp.Conn);
        Assert.True(sp.Socket > 0);
        Ev cp = cli.WaitFor(EventKinds.Prepare);
        Assert.Equal(cid, cp.Conn);

        // SEND events carry the bytes sent.
        Deadline.Until(() => cli.Events.Where(e => e.Kind == EventKinds.Send).Sum(e => e.Data!.Length) == 8, "send events");

        Assert.True(client.Disconnect());
        Ev cc = cli.WaitFor(EventKinds.Close, cid);
        Assert.Equal((SocketOperation.Close, HpSockError.None), (cc.Op, cc.Error));
        Ev sc = srv.WaitFor(EventKinds.Close, sid);
        Assert.Equal((SocketOperation.Receive, HpSockError.None), (sc.Op, sc.Error));
        Assert.False(client.Disconnect());
        Assert.Equal(0ul, client.ConnectionId);
    }

    [Fact]
    public void ClientCanBeRestarted()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv);
        var cli = new Recorder();
        using var client = new TcpClient(cli);
        for (int run = 1; run <= 2; run++)
        {
            client.Start("127.0.0.1", server.ListenAddress.Port);
            Deadline.Until(() => cli.Count(EventKinds.Connect) == run, $"connect {run}");
            client.Stop();
            Assert.Equal(EndpointState.Stopped, client.State);
            Assert.Equal(run, cli.Count(EventKinds.Shutdown));
        }
    }

    [Fact]
    public void IPv6Loopback()
    {
        if (!Socket.OSSupportsIPv6) return;
        var srv = new Recorder();
        using var server = new TcpServer(srv) { Workers = 1 };
        try
        {
            server.Start("::1", 0);
        }
        catch (HpSockException e) when (e.Name is "EADDRNOTAVAIL" or "EAFNOSUPPORT")
        {
            return; // no IPv6 loopback on this machine
        }
        Assert.Equal(IPAddress.IPv6Loopback, server.ListenAddress.Address);
        using var peer = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        peer.Connect(new IPEndPoint(IPAddress.IPv6Loopback, server.ListenAddress.Port));
        ulong id = srv.WaitFor(EventKinds.Accept).Conn;
        Assert.Equal(peer.LocalEndPoint, server.GetRemoteAddress(id));
    }

    [Fact]
    public void StaleAndUnknownIdsAreNotFoundNeverAnotherConnection()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv);
        using (Socket first = Net.Peer(server))
        {
            srv.WaitFor(EventKinds.Accept);
        }
        ulong stale = srv.WaitFor(EventKinds.Close).Conn;
        using Socket second = Net.Peer(server);
        ulong live = srv.WaitFor(e => e.Kind == EventKinds.Accept && e.Conn != stale, "second accept").Conn;
        Assert.NotEqual(stale, live);

        foreach (ulong id in new[] { stale, 0xdead_beef_0000_0001ul, 0ul })
        {
            var e = Assert.Throws<HpSockException>(() => server.Send(id, Hello));
            Assert.Equal(HpSockError.NotFound, e.Error);
            Assert.Equal("HPS_ENOTFOUND", e.Name);
            Assert.Equal(HpSockError.NotFound, server.TrySend(id, Hello));
            Assert.False(server.Disconnect(id));
            Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.GetExtra(id)).Error);
            Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.SetExtra(id, 1)).Error);
            Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.GetRemoteAddress(id)).Error);
            Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.PauseReceive(id)).Error);
            Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.SendV(id, Hello)).Error);
            if (id != 0)
                Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.GetStats(id)).Error);
            if (id != 0)
                Assert.Equal(HpSockError.NotFound, Assert.Throws<HpSockException>(() => server.GetUnsent(id)).Error);
        }
        // The live connection was never touched by the stale ID.
        server.Send(live, Hello);
        Assert.Equal(Hello, Net.ReadExactly(second, Hello.Length));
        Assert.Equal(1, srv.Count(EventKinds.Close));
    }

    [Fact]
    public void ExtraDataIsPointerSizedAndPerConnection()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv);
        using Socket a = Net.Peer(server), b = Net.Peer(server);
        Deadline.Until(() => srv.Count(EventKinds.Accept) == 2, "two accepts");
        ulong[] ids = server.GetConnectionIds();
        Assert.Equal(2, ids.Length);
        Assert.Equal(0, server.GetExtra(ids[0]));
        nint big = unchecked((nint)0x1234_5678_9abc_def0);
        server.SetExtra(ids[0], big);
        server.SetExtra(ids[1], -1);
        Assert.Equal(big, server.GetExtra(ids[0]));
        Assert.Equal(-1, server.GetExtra(ids[1]));
    }

    [Fact]
    public void StatsCountBytesAndMessages()
    {
        var srv = new Recorder { Receive = (s, id, d) => s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error };
        using var server = Net.Server(srv);
        using Socket peer = Net.Peer(server);
        ulong id = srv.WaitFor(EventKinds.Accept).Conn;
        for (int i = 0; i < 3; i++)
        {
            peer.Send(Hello);
            Net.ReadExactly(peer, Hello.Length);
        }
        ConnectionStats c = server.GetStats(id);
        Assert.Equal(15ul, c.BytesReceived);
        Assert.Equal(15ul, c.BytesSent);
        Assert.Equal(c.MessagesReceived, c.MessagesSent);
        Assert.InRange(c.MessagesReceived, 1ul, 3ul);
        ConnectionStats total = server.GetStats();
        Assert.Equal(15ul, total.BytesReceived);
        Assert.Equal(15ul, total.BytesSent);
        Assert.True(c.Age >= c.Silence);
    }

    [Fact]
    public void SendVGoesOutContiguouslyAndAsOneFrameInPack()
    {
        var srv = new Recorder();
        using var push = Net.Server(srv);
        using (Socket peer = Net.Peer(push))
        {
            ulong id = srv.WaitFor(EventKinds.Accept).Conn;
            push.SendV(id, Encoding.ASCII.GetBytes("ab"), ReadOnlyMemory<byte>.Empty, Encoding.ASCII.GetBytes("cde"));
            Assert.Equal("abcde", Encoding.ASCII.GetString(Net.ReadExactly(peer, 5)));
            Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => push.SendV(id)).Error);
            Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => push.SendV(id, ReadOnlyMemory<byte>.Empty)).Error);
            Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => push.Send(id, ReadOnlySpan<byte>.Empty)).Error);
        }

        var psrv = new Recorder();
        using var pack = Net.Server(psrv, s => s.ReceiveModel = ReceiveModel.Pack);
        using (Socket peer = Net.Peer(pack))
        {
            ulong id = psrv.WaitFor(EventKinds.Accept).Conn;
            pack.SendV(id, Encoding.ASCII.GetBytes("ab"), Encoding.ASCII.GetBytes("cde"));
            Assert.Equal(Net.PackFrame(Encoding.ASCII.GetBytes("abcde")), Net.ReadExactly(peer, 9));
            Assert.Equal(HpSockError.PackEmpty, pack.TrySend(id, ReadOnlySpan<byte>.Empty));
            Assert.Equal(HpSockError.PackEmpty, Assert.Throws<HpSockException>(() => pack.SendV(id, ReadOnlyMemory<byte>.Empty)).Error);
            pack.PackMaxSize.ToString(); // readable while running
            Assert.Equal(HpSockError.PackSize, pack.TrySend(id, new byte[pack.PackMaxSize + 1]));
        }
    }

    [Fact]
    public void SendFileSendsTheRangeAndRefusesWhatItCannot()
    {
        string path = Path.GetTempFileName();
        try
        {
            var content = new byte[300_000];
            for (int i = 0; i < content.Length; i++) content[i] = (byte)(i * 31 + 7);
            File.WriteAllBytes(path, content);
            var srv = new Recorder();
            using var server = Net.Server(srv);
            using Socket peer = Net.Peer(server);
            ulong id = srv.WaitFor(EventKinds.Accept).Conn;
            server.SendFile(id, path);
            Assert.Equal(content, Net.ReadExactly(peer, content.Length));
            server.SendFile(id, path, 1000, 5000);
            server.Send(id, Hello); // ordered behind the file
            Assert.Equal(content.AsSpan(1000, 5000).ToArray(), Net.ReadExactly(peer, 5000));
            Assert.Equal(Hello, Net.ReadExactly(peer, Hello.Length));
            Assert.Equal(HpSockError.File, Assert.Throws<HpSockException>(() => server.SendFile(id, path + ".missing")).Error);
            Assert.Equal(HpSockError.File, Assert.Throws<HpSockException>(() => server.SendFile(id, path, content.Length + 1)).Error);
        }
        finally
        {
            File.Delete(path);
        }

        using var pack = new TcpServer(new Nothing()) { ReceiveModel = ReceiveModel.Pack, Workers = 1 };
        pack.Start("127.0.0.1", 0);
        Assert.Equal(HpSockError.WrongModel, Assert.Throws<HpSockException>(() => pack.SendFile(1, "/etc/hostname")).Error);
    }

    [Fact]
    public void PullModelFetchAndPeek()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv, s => s.ReceiveModel = ReceiveModel.Pull);
        using Socket peer = Net.Peer(server);
        ulong id = srv.WaitFor(EventKinds.Accept).Conn;
        peer.Send(Encoding.ASCII.GetBytes("0123456789"));
        Deadline.Until(() => srv.Events.Any(e => e.Kind == EventKinds.Receive && e.Available == 10), "10 bytes waiting");
        var four = new byte[4];
        Assert.True(server.TryPeek(id, four));
        Assert.Equal("0123", Encoding.ASCII.GetString(four));
        Assert.True(server.TryFetch(id, four));
        Assert.Equal("0123", Encoding.ASCII.GetString(four));
        Assert.False(server.TryFetch(id, new byte[7])); // 6 wait
        var six = new byte[6];
        Assert.True(server.TryFetch(id, six));
        Assert.Equal("456789", Encoding.ASCII.GetString(six));
        Assert.False(server.TryPeek(id, new byte[1]));
        Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => server.TryFetch(id, Span<byte>.Empty)).Error);

        var psrv = new Recorder();
        using var push = Net.Server(psrv);
        using Socket p2 = Net.Peer(push);
        ulong pid = psrv.WaitFor(EventKinds.Accept).Conn;
        Assert.Equal(HpSockError.WrongModel, Assert.Throws<HpSockException>(() => push.TryFetch(pid, four)).Error);
    }

    [Fact]
    public void PauseReceiveHoldsDataUntilResumed()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv);
        using Socket peer = Net.Peer(server);
        ulong id = srv.WaitFor(EventKinds.Accept).Conn;
        server.PauseReceive(id);
        peer.Send(Hello);
        Thread.Sleep(100); // an absence can only be observed for a while
        Assert.Equal(0, srv.Count(EventKinds.Receive));
        server.ResumeReceive(id);
        srv.WaitFor(EventKinds.Receive, id);
    }

    [Fact]
    public void PackHandlerPauseHoldsTheRestOfTheRead()
    {
        // The handler pauses on the first frame: the 19 read with it wait for the resume.
        var srv = new Recorder();
        int seen = 0;
        srv.Receive = (ep, conn, data) =>
        {
            if (Interlocked.Increment(ref seen) == 1)
                ep.PauseReceive(conn);
            return HandleResult.Ok;
        };
        using var server = Net.Server(srv, s => s.ReceiveModel = ReceiveModel.Pack);
        using Socket peer = Net.Peer(server);
        ulong id = srv.WaitFor(EventKinds.Accept).Conn;
        string[] frames = Enumerable.Range(0, 20).Select(i => $"frame-{i:D2}").ToArray();
        peer.Send(frames.SelectMany(f => Net.PackFrame(Encoding.ASCII.GetBytes(f))).ToArray()); // one write
        srv.WaitFor(EventKinds.Receive, id);
        Thread.Sleep(200); // an absence can only be observed for a while
        Assert.Equal(1, srv.Count(EventKinds.Receive));
        server.ResumeReceive(id);
        Deadline.Until(() => srv.Count(EventKinds.Receive) == 20, "the held frames");
        Assert.Equal(frames, srv.Events.Where(e => e.Kind == EventKinds.Receive)
            .Select(e => Encoding.ASCII.GetString(e.Data!)).ToArray());
    }

    [Fact]
    public void AgentManyConnectionsCountListAndDisconnectLong()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv);
        var ag = new Recorder();
        using var agent = new TcpAgent(ag) { Workers = 2 };
        agent.Start();
        var ids = Enumerable.Range(0, 10).Select(_ => agent.Connect("localhost", server.ListenAddress.Port)).ToArray();
        Assert.Equal(10, ids.Distinct().Count());
        Deadline.Until(() => ag.Count(EventKinds.Connect) == 10 && srv.Count(EventKinds.Accept) == 10, "10 connections");
        Assert.Equal(10, agent.ConnectionCount);
        Assert.Equal(ids.OrderBy(x => x), agent.GetConnectionIds().OrderBy(x => x));
        Assert.Equal(10, server.ConnectionCount);
        foreach (ulong id in ids) agent.Send(id, Hello);
        Deadline.Until(() => srv.Count(EventKinds.Receive) >= 10, "receives");

        // Every connection, not just the first: they connect at slightly
        // different moments, on two loops.
        Deadline.Until(() => ids.All(i => agent.GetStats(i).Age >= TimeSpan.FromMilliseconds(50)), "age");
        Assert.Equal(10, agent.DisconnectLong(TimeSpan.FromMilliseconds(50)));
        Deadline.Until(() => ag.Count(EventKinds.Close) == 10, "agent closes");
        Assert.All(ag.Events.Where(e => e.Kind == EventKinds.Close), e => Assert.Equal((SocketOperation.Close, HpSockError.None), (e.Op, e.Error)));
        Assert.Equal(HpSockError.InvalidArgument, Assert.Throws<HpSockException>(() => agent.DisconnectLong(TimeSpan.Zero)).Error);
        Assert.Equal(0, agent.ConnectionCount);
    }

    [Fact]
    public void SendFromAnotherThreadAndLiveEventMask()
    {
        var srv = new Recorder();
        using var server = Net.Server(srv);
        using Socket peer = Net.Peer(server);
        ulong id = srv.WaitFor(EventKinds.Accept).Conn;
        server.Events = EventKinds.Receive; // SEND events off
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            for (int i = 0; i < 100; i++) server.Send(id, new[] { (byte)t });
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        byte[] got = Net.ReadExactly(peer, 400);
        for (int t = 0; t < 4; t++) Assert.Equal(100, got.Count(b => b == t));
        Assert.Equal(0, srv.Count(EventKinds.Send));
        server.Events = EventKinds.Send;
        server.Send(id, Hello);
        srv.WaitFor(EventKinds.Send, id);
    }

    [Fact]
    public void ARunningEndpointIsNotCollectedAndAStoppedOneIs()
    {
        int port;
        WeakReference weak = StartUnreferenced(out port);
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.True(weak.IsAlive, "a running server was collected");
        using (var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            peer.Connect(new IPEndPoint(IPAddress.Loopback, port));
            peer.Send(Hello);
            Assert.Equal(Hello, Net.ReadExactly(peer, Hello.Length));
        }
        StopVia(weak);
        Deadline.Until(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return !weak.IsAlive;
        }, "the stopped server to be collected");
    }

    private static WeakReference StartUnreferenced(out int port)
    {
        var server = Net.Server(new EchoScenarioTests.EchoServerListener());
        port = server.ListenAddress.Port;
        return new WeakReference(server);
    }

    private static void StopVia(WeakReference weak) => ((TcpServer)weak.Target!).Stop();
}
