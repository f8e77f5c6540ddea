// FlowControlTests.cs - back-pressure (issue 19): water-mark events, unsent
// bytes, and automatic pausing, so that an echo server configured like
// examples/csharp/EchoServer never drops a client however it reads.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using HpSock;

namespace HpSock.Tests;

public class FlowControlTests
{
    /// <summary>A byte stream every client can check at any offset: a prime
    /// period, so blocks differ.</summary>
    private const int Period = 65521;

    private static readonly byte[] Pattern = MakePattern();

    private static byte[] MakePattern()
    {
        var p = new byte[Period + (1 << 20)];
        for (int i = 0; i < p.Length; i++)
        {
            int k = i % Period;
            p[i] = (byte)(k * 31 + (k >> 8) * 7 + 1);
        }
        return p;
    }

    /// <summary>Offset into Pattern of client c's byte at stream offset i.</summary>
    private static int At(int c, long i) => (int)((i + c * 977L) % Period);

    /// <summary>The echo of examples/csharp/EchoServer, with the server's closes
    /// and high-water events recorded.</summary>
    private sealed class Echo : IListener
    {
        public readonly ConcurrentQueue<string> Closes = new();
        public readonly ConcurrentQueue<long> Highs = new();

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data) =>
            sender.TrySend(connId, data) == HpSockError.None ? HandleResult.Ok : HandleResult.Error;

        public HandleResult OnHighWater(TcpEndpoint sender, ulong connId, long unsent)
        {
            Highs.Enqueue(unsent);
            return HandleResult.Ok;
        }

        public HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
        {
            Closes.Enqueue($"{connId:x} {operation} {HpSockException.GetName(error)}");
            return HandleResult.Ok;
        }
    }

    /// <summary>As the example configures it: push model, 2 loops, automatic pausing.</summary>
    private static TcpServer EchoServer(IListener l) => Net.Server(l, s => s.AutoPause = true, workers: 2);

    /// <summary>A client socket with small kernel buffers, so a few MiB are more
    /// than the path holds.</summary>
    private static Socket SmallPeer(TcpServer server)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            ReceiveBufferSize = 64 << 10,
            SendBufferSize = 64 << 10,
            ReceiveTimeout = (int)Deadline.Default.TotalMilliseconds,
        };
        s.Connect(new IPEndPoint(IPAddress.Loopback, server.ListenAddress.Port));
        return s;
    }

    [Fact]
    public void UnsentCountsWhatAPeerHasNotTakenYet()
    {
        var rec = new Recorder();
        using var server = Net.Server(rec);
        using Socket peer = SmallPeer(server);
        ulong id = rec.WaitFor(EventKinds.HandShake).Conn;
        Assert.Equal(0, server.GetUnsent(id));
        var big = new byte[12 << 20]; // more than every socket buffer on the way holds
        for (int i = 0; i < big.Length; i++) big[i] = Pattern[i % Period];
        server.Send(id, big);
        long queued = server.GetUnsent(id);
        Assert.True(queued > 0 && queued <= big.Length, $"unsent after 12 MiB to a peer not reading: {queued}");
        Assert.Equal(big, Net.ReadExactly(peer, big.Length));
        Deadline.Until(() => server.GetUnsent(id) == 0, "unsent back to 0 once the peer read");
    }

    [Fact]
    public void WaterMarkEventsComeForAClientThatDoesNotReadThenClearWhenItReads()
    {
        var rec = new Recorder { RecordData = false };
        using var server = Net.Server(rec, s =>
        {
            s.SetSendWaterMarks(64 << 10, 16 << 10);
            s.SendBufferSize = 64 << 10;
        }, workers: 1);
        using Socket peer = SmallPeer(server);
        ulong id = rec.WaitFor(EventKinds.HandShake).Conn;
        var big = new byte[8 << 20]; // far more than the socket buffers on the way hold
        for (int i = 0; i < big.Length; i++) big[i] = Pattern[i % Period];
        server.Send(id, big);
        Ev high = rec.WaitFor(EventKinds.HighWater, id);
        Assert.True(high.Available > 64 << 10, $"HIGH_WATER says the unsent bytes, above high water: {high.Available}");
        Assert.True(server.GetUnsent(id) > 16 << 10, $"still unsent: {server.GetUnsent(id)}");
        Assert.Equal(0, rec.Count(EventKinds.LowWater));
        Assert.Equal(big, Net.ReadExactly(peer, big.Length));
        Ev low = rec.WaitFor(EventKinds.LowWater, id);
        Assert.True(low.Available <= 16 << 10, $"LOW_WATER at or below low water: {low.Available}");
        Assert.Equal(new[] { EventKinds.HighWater, EventKinds.LowWater },
            rec.Events.Where(e => e.Conn == id && e.Kind is EventKinds.HighWater or EventKinds.LowWater).Select(e => e.Kind).ToArray());
        Assert.Equal(0, server.GetUnsent(id));
    }

    [Fact]
    public void AutoPauseHoldsANonReadingClientBoundedAndDropsNothing()
    {
        var echo = new Echo();
        using var server = EchoServer(echo);
        using Socket peer = SmallPeer(server);
        Deadline.Until(() => server.ConnectionCount == 1, "the connection");
        ulong id = server.GetConnectionIds()[0];
        long high = server.SendHighWater;
        long written = 0;
        var writer = new Thread(() =>
        {
            try
            {
                for (long i = 0; ; i += 16384) // until the socket is closed under it
                {
                    peer.Send(Pattern, At(0, i), 16384, SocketFlags.None);
                    Interlocked.Add(ref written, 16384);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // the test closes the socket
            }
        }) { IsBackground = true, Name = "non-reading writer" };
        writer.Start();
        Deadline.Until(() => server.GetCounter(EndpointCounter.AutoPauses) >= 1, "an automatic pause");
        // The pause is at once; its event comes where no handler of the connection runs.
        Deadline.Until(() => !echo.Highs.IsEmpty, "HIGH_WATER");
        Assert.True(echo.Highs.TryPeek(out long firstHigh) && firstHigh > high, $"HIGH_WATER above high water: {string.Join(",", echo.Highs)}");
        // A negative check needs a window: nothing may grow or close within it.
        long before = Interlocked.Read(ref written);
        Thread.Sleep(300);
        long unsent = server.GetUnsent(id);
        Assert.True(unsent <= high + (2 << 20), $"unsent {unsent} held near high water {high}");
        Assert.Empty(echo.Closes);
        long grew = Interlocked.Read(ref written) - before;
        Assert.True(grew < 16 << 20, $"the client is held back by TCP, not queued for: {grew}");
        // Now it reads: every byte it wrote comes back, in order.
        var buf = new byte[1 << 16];
        long got = 0;
        while (got < (24 << 20))
        {
            int n = peer.Receive(buf);
            Assert.True(n > 0, $"closed after {got} bytes");
            for (int k = 0; k < n; k++, got++)
                if (buf[k] != Pattern[At(0, got)]) Assert.Fail($"byte {got} differs");
        }
        Assert.Empty(echo.Closes);
        peer.Close();
        writer.Join(Deadline.Default);
    }

    /// <summary>A slow reader's stall: until its writer is 48 MiB ahead (more
    /// than every socket buffer on the way plus the default send queue), or has
    /// made no progress for 50 ms (the server paused it), or the writing time is
    /// over.</summary>
    private static void Lag(Func<long> progress, long got, Stopwatch clock, TimeSpan writeTime)
    {
        const long lag = 48L << 20;
        long last = progress();
        var still = Stopwatch.StartNew();
        while (progress() - got < lag && clock.Elapsed < writeTime)
        {
            Thread.Sleep(1);
            long p = progress();
            if (p != last)
            {
                last = p;
                still.Restart();
            }
            else if (still.ElapsedMilliseconds > 50)
            {
                return;
            }
        }
    }

    [Fact]
    public void AutoPausedEchoServesEightStreamingClientsWithoutADrop()
    {
        const int clients = 8, block = 16 << 10;
        var writeTime = TimeSpan.FromSeconds(3);
        var echo = new Echo();
        using var server = EchoServer(echo);
        var socks = Enumerable.Range(0, clients).Select(_ => Net.Peer(server)).ToArray();
        var progress = new long[clients]; // bytes written so far
        var done = new bool[clients];
        var read = new long[clients];
        var failure = new string?[clients];
        var threads = new List<Thread>();
        var clock = Stopwatch.StartNew();
        for (int c = 0; c < clients; c++)
        {
            int cc = c;
            Socket s = socks[c];
            threads.Add(new Thread(() =>
            {
                try
                {
                    while (clock.Elapsed < writeTime)
                    {
                        s.Send(Pattern, At(cc, Volatile.Read(ref progress[cc])), block, SocketFlags.None);
                        Interlocked.Add(ref progress[cc], block);
                    }
                }
                catch (SocketException e)
                {
                    failure[cc] = $"write: {e.SocketErrorCode}";
                }
                Volatile.Write(ref done[cc], true);
            }) { Name = $"writer-{c}" });
            threads.Add(new Thread(() =>
            {
                // Odd clients are slow readers: every 8 MiB they let their writer run
                // ahead (see Lag), the load that made connections drop (SendQueueFull)
                // before automatic pausing.
                bool slow = cc % 2 == 1;
                var buf = new byte[block];
                long got = 0;
                try
                {
                    while (true)
                    {
                        // Block in Receive only for bytes already written: their echo must come.
                        long have = Volatile.Read(ref progress[cc]);
                        if (got == have)
                        {
                            if (Volatile.Read(ref done[cc]) && got == Volatile.Read(ref progress[cc])) break;
                            Thread.Sleep(0);
                            continue;
                        }
                        int n = s.Receive(buf, 0, (int)Math.Min(buf.Length, have - got), SocketFlags.None);
                        if (n == 0)
                        {
                            failure[cc] = $"closed by the server after {got} bytes";
                            break;
                        }
                        for (int k = 0; k < n; k++, got++)
                        {
                            if (buf[k] != Pattern[At(cc, got)])
                            {
                                failure[cc] = $"byte {got} differs";
                                Volatile.Write(ref read[cc], got);
                                return;
                            }
                        }
                        if (slow && (got >> 23) != ((got - n) >> 23))
                            Lag(() => Volatile.Read(ref progress[cc]), got, clock, writeTime);
                    }
                }
                catch (SocketException e)
                {
                    failure[cc] = $"read: {e.SocketErrorCode} after {got} bytes";
                }
                Volatile.Write(ref read[cc], got);
            }) { Name = $"reader-{c}" });
        }
        foreach (var t in threads) t.Start();
        foreach (var t in threads)
            Assert.True(t.Join(Deadline.Default + writeTime), $"{t.Name} did not finish");
        Assert.True(server.ConnectionCount == clients, $"every client still connected; server closes: {string.Join("; ", echo.Closes)}");
        for (int c = 0; c < clients; c++)
        {
            Assert.True(failure[c] is null, $"client {c}: {failure[c]}");
            Assert.True(progress[c] > 0, $"client {c} wrote");
            Assert.True(progress[c] == read[c], $"client {c}: wrote {progress[c]}, got back and checked {read[c]}");
            socks[c].Close();
        }
        Deadline.Until(() => echo.Closes.Count == clients, "the server sees every close");
        Assert.All(echo.Closes, close => Assert.EndsWith(" OK", close));
    }
}
