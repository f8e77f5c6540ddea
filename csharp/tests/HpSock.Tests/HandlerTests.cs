// HandlerTests.cs - the bridge's promises: a handler that throws is reported
// and treated as ERROR, and the process goes on; Dispose and Stop from inside
// a handler neither deadlock nor crash; after Dispose every call fails
// cleanly.
using System.Collections.Concurrent;
using System.Net.Sockets;
using HpSock;

namespace HpSock.Tests;

public class HandlerTests
{
    private static readonly byte[] Ping = { 1, 2, 3 };

    [Fact]
    public void AThrowingReceiveHandlerIsReportedAndClosesOnlyThatConnection()
    {
        var rec = new Recorder
        {
            Receive = (s, id, d) => d[0] == 0xff
                ? throw new InvalidOperationException("boom")
                : s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error,
        };
        using var server = Net.Server(rec);
        var reports = new ConcurrentQueue<HandlerExceptionEventArgs>();
        server.HandlerException += (sender, e) =>
        {
            Assert.Same(server, sender);
            reports.Enqueue(e);
        };
        using Socket good = Net.Peer(server), bad = Net.Peer(server);
        bad.Send(new byte[] { 0xff });
        Ev close = rec.WaitFor(EventKinds.Close);
        Assert.Equal((SocketOperation.Receive, HpSockError.Handler), (close.Op, close.Error));
        Assert.True(reports.TryDequeue(out var report));
        Assert.IsType<InvalidOperationException>(report!.Exception);
        Assert.Equal("boom", report.Exception.Message);
        Assert.Equal(EventKinds.Receive, report.Event);
        Assert.Equal(close.Conn, report.ConnectionId);
        Assert.Equal(0, bad.Receive(new byte[1])); // the peer sees the close

        // The process and the other connection go on.
        good.Send(Ping);
        Assert.Equal(Ping, Net.ReadExactly(good, Ping.Length));
        using Socket later = Net.Peer(server);
        later.Send(Ping);
        Assert.Equal(Ping, Net.ReadExactly(later, Ping.Length));
    }

    [Fact]
    public void AThrowingAcceptRefusesTheConnectionWithoutAClose()
    {
        var rec = new Recorder { Accept = (s, id) => throw new InvalidOperationException("no") };
        using var server = Net.Server(rec);
        int reported = 0;
        server.HandlerException += (s, e) => Interlocked.Increment(ref reported);
        using Socket peer = Net.Peer(server);
        Assert.Equal(0, peer.Receive(new byte[1])); // refused: closed at once
        Deadline.Until(() => Volatile.Read(ref reported) == 1, "report");
        Assert.Equal(0, rec.Count(EventKinds.Close));
        Assert.Equal(0, server.ConnectionCount);
    }

    [Fact]
    public void ThrowingCloseAndShutdownHandlersAndAThrowingReporterDoNotCrash()
    {
        var rec = new Recorder
        {
            Close = (s, id, op, e) => throw new InvalidOperationException("close"),
            Shutdown = s => throw new InvalidOperationException("shutdown"),
        };
        var server = Net.Server(rec);
        server.HandlerException += (s, e) => throw new ApplicationException("the reporter throws too");
        var stderr = new StringWriter();
        TextWriter old = Console.Error;
        Console.SetError(TextWriter.Synchronized(stderr));
        try
        {
            using (Net.Peer(server))
            {
                rec.WaitFor(EventKinds.Accept);
            }
            rec.WaitFor(EventKinds.Close);
            server.Dispose();
        }
        finally
        {
            Console.SetError(old);
        }
        Assert.Equal(1, rec.Count(EventKinds.Shutdown));
        Assert.Contains("the reporter throws too", stderr.ToString());
        Assert.Contains("close", stderr.ToString());
    }

    [Fact]
    public void WithoutASubscriberTheExceptionGoesToStandardError()
    {
        var rec = new Recorder { Receive = (s, id, d) => throw new FormatException("unreported") };
        var stderr = new StringWriter();
        TextWriter old = Console.Error;
        Console.SetError(TextWriter.Synchronized(stderr));
        try
        {
            using var server = Net.Server(rec);
            using Socket peer = Net.Peer(server);
            peer.Send(Ping);
            Ev close = rec.WaitFor(EventKinds.Close);
            Assert.Equal(HpSockError.Handler, close.Error);
        }
        finally
        {
            Console.SetError(old);
        }
        string text = stderr.ToString();
        Assert.Contains("FormatException", text);
        Assert.Contains("unreported", text);
    }

    [Fact]
    public void ThrowingPrepareFailsTheStartWithHandlerError()
    {
        var rec = new Recorder { Prepare = (s, id, fd) => throw new InvalidOperationException("prepare") };
        using var server = new TcpServer(rec) { Workers = 1 };
        int reported = 0;
        server.HandlerException += (s, e) => reported++;
        var e = Assert.Throws<HpSockException>(() => server.Start("127.0.0.1", 0));
        Assert.Equal(HpSockError.Handler, e.Error);
        Assert.Equal(1, reported);
        rec.Prepare = null;
        server.Start("127.0.0.1", 0);
        Assert.Equal(EndpointState.Started, server.State);
    }

    public static IEnumerable<object[]> ErrorPoints() => new[]
    {
        new object[] { "agent prepare", SocketOperation.Connect },
        new object[] { "agent connect", SocketOperation.Connect },
        new object[] { "agent handshake", SocketOperation.Connect },
        new object[] { "server handshake", SocketOperation.Accept },
        new object[] { "server send", SocketOperation.Send },
    };

    /// <summary>HandleResult.Error from each connection event closes that
    /// connection with the event's operation and HpSockError.Handler.</summary>
    [Theory]
    [MemberData(nameof(ErrorPoints))]
    public void ErrorFromAConnectionEventClosesItWithThatOperation(string where, SocketOperation op)
    {
        var srv = new FailingSend(failSend: where == "server send");
        if (where == "server handshake") srv.HandShake = (s, id) => HandleResult.Error;
        using var server = Net.Server(srv);
        Ev close;
        if (where.StartsWith("server"))
        {
            using Socket peer = Net.Peer(server);
            try
            {
                peer.Send(Ping);
            }
            catch (SocketException)
            {
                // "server handshake" may have closed the connection already
            }
            close = srv.WaitFor(EventKinds.Close);
        }
        else
        {
            var ag = new Recorder();
            if (where == "agent prepare") ag.Prepare = (s, id, fd) => HandleResult.Error;
            if (where == "agent connect") ag.Connect = (s, id) => HandleResult.Error;
            if (where == "agent handshake") ag.HandShake = (s, id) => HandleResult.Error;
            using var agent = new TcpAgent(ag) { Workers = 1 };
            agent.Start();
            ulong cid = agent.Connect("127.0.0.1", server.ListenAddress.Port);
            close = ag.WaitFor(EventKinds.Close, cid);
        }
        Assert.Equal((op, HpSockError.Handler), (close.Op, close.Error));
    }

    /// <summary>An echoing recorder whose OnSend may return Error.</summary>
    private sealed class FailingSend : Recorder
    {
        private readonly bool _failSend;

        public FailingSend(bool failSend)
        {
            _failSend = failSend;
            Receive = (s, id, d) => s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error;
        }

        public override HandleResult OnSend(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
        {
            base.OnSend(sender, connId, data);
            return _failSend ? HandleResult.Error : HandleResult.Ok;
        }
    }

    public static IEnumerable<object[]> DisposePoints() => new[]
    {
        new object[] { "accept" }, new object[] { "handshake" }, new object[] { "receive" },
        new object[] { "close" }, new object[] { "shutdown" },
    };

    [Theory]
    [MemberData(nameof(DisposePoints))]
    public void DisposeFromInsideAServerHandler(string where)
    {
        var rec = new Recorder();
        TcpServer? server = null;
        var disposedOn = new ManualResetEventSlim();
        Exception? afterDispose = null;
        void DisposeHere(TcpEndpoint s)
        {
            s.Dispose();
            s.Dispose(); // twice is fine
            try
            {
                s.Send(1, Ping);
            }
            catch (Exception e)
            {
                afterDispose = e;
            }
            disposedOn.Set();
        }
        switch (where)
        {
            case "accept": rec.Accept = (s, id) => { DisposeHere(s); return HandleResult.Ok; }; break;
            case "handshake": rec.HandShake = (s, id) => { DisposeHere(s); return HandleResult.Ok; }; break;
            case "receive": rec.Receive = (s, id, d) => { DisposeHere(s); return HandleResult.Ok; }; break;
            case "close":
                rec.Receive = (s, id, d) => HandleResult.Error; // closes the connection
                rec.Close = (s, id, op, e) => DisposeHere(s);
                break;
            case "shutdown": rec.Shutdown = s => { if (!s.IsDisposed) DisposeHere(s); }; break;
        }
        server = Net.Server(rec);
        using (Socket peer = Net.Peer(server))
        {
            if (where is "receive" or "close") peer.Send(Ping);
            if (where == "shutdown")
            {
                rec.WaitFor(EventKinds.Accept);
                ThreadPool.QueueUserWorkItem(_ => server.Stop()); // shutdown runs on a loop thread
            }
            Assert.True(disposedOn.Wait(Deadline.Default), "the handler ran");
            // The rest of the stop is delivered: the connection's close, then shutdown.
            rec.WaitFor(EventKinds.Shutdown);
            Assert.Equal(1, rec.Count(EventKinds.Close));
            Assert.Equal(0, peer.Receive(new byte[1]));
        }
        Assert.IsType<ObjectDisposedException>(afterDispose);
        Assert.True(server.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => server.Send(1, Ping));
        Assert.Throws<ObjectDisposedException>(() => _ = server.State);
        Assert.Throws<ObjectDisposedException>(() => server.Stop());
        server.Dispose();
    }

    [Fact]
    public void DisposeFromInsideAnAgentConnectAndAClientReceive()
    {
        var srv = new Recorder { Receive = (s, id, d) => s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error };
        using var server = Net.Server(srv);
        var ag = new Recorder { Connect = (s, id) => { s.Dispose(); return HandleResult.Ok; } };
        var agent = new TcpAgent(ag) { Workers = 2 };
        agent.Start();
        agent.Connect("127.0.0.1", server.ListenAddress.Port);
        ag.WaitFor(EventKinds.Shutdown);
        Assert.True(agent.IsDisposed);

        var cl = new Recorder { Receive = (s, id, d) => { s.Dispose(); return HandleResult.Ok; } };
        var client = new TcpClient(cl);
        client.Start("127.0.0.1", server.ListenAddress.Port);
        cl.WaitFor(EventKinds.Connect);
        client.Send(Ping);
        cl.WaitFor(EventKinds.Shutdown);
        Assert.Equal(1, cl.Count(EventKinds.Close));
        Assert.True(client.IsDisposed);
    }

    [Fact]
    public void DisposeInServerPrepareOnTheStartingThread()
    {
        var rec = new Recorder { Prepare = (s, id, fd) => { s.Dispose(); return HandleResult.Ok; } };
        var server = new TcpServer(rec) { Workers = 1 };
        try
        {
            server.Start("127.0.0.1", 0);
        }
        catch (ObjectDisposedException)
        {
        }
        Assert.True(server.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => _ = server.ListenAddress);
    }

    [Fact]
    public void StopFromInsideAHandlerIsAsynchronousAndWaitIsRefusedThere()
    {
        HpSockException? waitError = null;
        var rec = new Recorder
        {
            Receive = (s, id, d) =>
            {
                try
                {
                    s.Wait(TimeSpan.FromSeconds(1));
                }
                catch (HpSockException e)
                {
                    waitError = e;
                }
                s.Stop();
                return HandleResult.Ok;
            },
        };
        using var server = Net.Server(rec);
        using Socket peer = Net.Peer(server);
        peer.Send(Ping);
        Assert.True(server.Wait(Deadline.Default));
        Assert.Equal(EndpointState.Stopped, server.State);
        Assert.Equal(HpSockError.InLoop, waitError?.Error);
        Assert.Equal(1, rec.Count(EventKinds.Shutdown));
        Assert.Equal(SocketOperation.Close, rec.WaitFor(EventKinds.Close).Op);
    }

    [Fact]
    public void HandlersStoppingEachOtherDoNotDeadlock()
    {
        // Each server's accept handler stops the other while the other's
        // handler runs too: a stop inside any endpoint's handler only begins.
        var entered = new[] { new ManualResetEventSlim(), new ManualResetEventSlim() };
        var servers = new TcpServer?[2];
        var seen = new ConcurrentDictionary<int, EndpointState>();
        Recorder Make(int me)
        {
            int other = 1 - me;
            return new Recorder
            {
                Accept = (s, id) =>
                {
                    entered[me].Set();
                    entered[other].Wait(Deadline.Default);
                    servers[other]!.Stop();
                    seen[me] = servers[other]!.State;
                    return HandleResult.Ok;
                },
            };
        }
        using var a = Net.Server(Make(0), workers: 1);
        using var b = Net.Server(Make(1), workers: 1);
        servers[0] = a;
        servers[1] = b;
        using Socket pa = Net.Peer(a);
        using Socket pb = Net.Peer(b);
        Assert.True(a.Wait(Deadline.Default), "the stops deadlocked");
        Assert.True(b.Wait(Deadline.Default), "the stops deadlocked");
        Assert.Equal(2, seen.Count);
        Assert.All(seen.Values, st => Assert.True(
            st == EndpointState.Stopping || st == EndpointState.Stopped, st.ToString()));
    }

    [Fact]
    public void DisposeFromAnotherThreadWhileTrafficFlows()
    {
        for (int round = 0; round < 5; round++)
        {
            var rec = new Recorder
            {
                RecordData = false,
                Receive = (s, id, d) => s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error,
            };
            var server = Net.Server(rec);
            var peers = Enumerable.Range(0, 4).Select(_ => Net.Peer(server)).ToList();
            using var stop = new CancellationTokenSource();
            var pumps = peers.Select(p => Task.Run(() =>
            {
                var buf = new byte[4096];
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        p.Send(buf, 0, 512, SocketFlags.None);
                        if (p.Receive(buf) == 0) break;
                    }
                }
                catch (SocketException)
                {
                }
                catch (ObjectDisposedException)
                {
                }
            })).ToList();
            Deadline.Until(() => rec.Count(EventKinds.Accept) == 4 && rec.Count(EventKinds.Receive) > 50, "traffic");
            server.Dispose();
            Assert.Equal(1, rec.Count(EventKinds.Shutdown));
            Assert.Equal(4, rec.Count(EventKinds.Close));
            stop.Cancel();
            peers.ForEach(p => p.Dispose());
            Assert.True(Task.WaitAll(pumps.ToArray(), Deadline.Default));
        }
    }
}
