// EchoScenarioTests.cs - tests/fixtures/echo/scenarios.txt: round trips
// through a C# hpsock server and a C# hpsock agent of the same model.
using System.Collections.Concurrent;
using HpSock;

namespace HpSock.Tests;

public class EchoScenarioTests
{
    private const string File = "echo/scenarios.txt";

    internal sealed record Scenario(string Name, int Conns, int Size, int Rounds, ReceiveModel Model);

    public static IEnumerable<object[]> Names() => Fixtures.Lines(File).Select(l => new object[] { l.Split(' ')[0] });

    internal static Scenario Parse(string line)
    {
        string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int conns = -1, size = -1, rounds = -1;
        ReceiveModel? model = null;
        foreach (string field in parts.Skip(1))
        {
            int eq = field.IndexOf('=');
            Assert.True(eq > 0, $"{parts[0]}: malformed field '{field}'");
            string key = field[..eq], value = field[(eq + 1)..];
            switch (key)
            {
                case "conns": conns = int.Parse(value); break;
                case "size": size = int.Parse(value); break;
                case "rounds": rounds = int.Parse(value); break;
                case "model":
                    model = value switch
                    {
                        "push" => ReceiveModel.Push,
                        "pull" => ReceiveModel.Pull,
                        "pack" => ReceiveModel.Pack,
                        _ => throw new InvalidDataException($"{parts[0]}: unknown model '{value}'"),
                    };
                    break;
                default: throw new InvalidDataException($"{parts[0]}: unknown key '{key}'");
            }
        }
        Assert.True(conns >= 1 && size >= 1 && rounds >= 1 && model != null, $"{parts[0]}: missing or invalid field");
        return new Scenario(parts[0], conns, size, rounds, model!.Value);
    }

    [Fact]
    public void FixtureHasEveryModel()
    {
        var all = Fixtures.Lines(File).Select(Parse).ToList();
        Assert.NotEmpty(all);
        foreach (ReceiveModel m in Enum.GetValues<ReceiveModel>()) Assert.Contains(all, s => s.Model == m);
    }

    internal static byte Payload(int c, int r, int j) => (byte)((7 * c + 13 * r + j) % 251);

    /// <summary>The echo server of the fixture's section 1.</summary>
    internal sealed class EchoServerListener : IListener
    {
        public readonly ConcurrentQueue<(ulong Conn, SocketOperation Op, HpSockError Error)> Closes = new();
        public readonly ConcurrentQueue<string> Errors = new();

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
        {
            HpSockError e = sender.TrySend(connId, data);
            if (e != HpSockError.None) Errors.Enqueue($"server send: {e}");
            return e == HpSockError.None ? HandleResult.Ok : HandleResult.Error;
        }

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, long available)
        {
            var buf = new byte[available];
            if (!sender.TryFetch(connId, buf))
            {
                Errors.Enqueue($"server fetch of {available} bytes failed");
                return HandleResult.Error;
            }
            return OnReceive(sender, connId, buf);
        }

        public HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
        {
            Closes.Enqueue((connId, operation, error));
            return HandleResult.Ok;
        }
    }

    /// <summary>The client side: sends round r, waits for its echo, compares,
    /// sends round r + 1.</summary>
    private sealed class ClientListener : IListener
    {
        private sealed class Conn
        {
            public int Index, Round, Got;
            public byte[] Buffer = Array.Empty<byte>();
        }

        private readonly Scenario _s;
        private readonly ConcurrentDictionary<ulong, Conn> _conns = new();
        public readonly ConcurrentQueue<string> Errors = new();
        public readonly ConcurrentQueue<(ulong Conn, SocketOperation Op, HpSockError Error)> Closes = new();
        public int Connected, Done;

        public ClientListener(Scenario s) => _s = s;

        public void Add(ulong id, int index) =>
            _conns[id] = new Conn { Index = index, Buffer = new byte[_s.Size] };

        public byte[] Message(int c, int r)
        {
            var m = new byte[_s.Size];
            for (int j = 0; j < m.Length; j++) m[j] = Payload(c, r, j);
            return m;
        }

        public HandleResult OnConnect(TcpEndpoint sender, ulong connId)
        {
            Interlocked.Increment(ref Connected);
            return HandleResult.Ok;
        }

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
        {
            Conn c = _conns[connId];
            if (_s.Model == ReceiveModel.Pack && data.Length != _s.Size)
                return Fail($"conn {c.Index} round {c.Round}: frame of {data.Length} bytes, want {_s.Size}");
            if (c.Got + data.Length > _s.Size)
                return Fail($"conn {c.Index} round {c.Round}: {c.Got + data.Length} bytes back, want {_s.Size}");
            data.CopyTo(c.Buffer.AsSpan(c.Got));
            c.Got += data.Length;
            return c.Got == _s.Size ? RoundDone(sender, connId, c) : HandleResult.Ok;
        }

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, long available)
        {
            Conn c = _conns[connId];
            if (available > _s.Size)
                return Fail($"conn {c.Index} round {c.Round}: {available} bytes waiting, want at most {_s.Size}");
            if (available < _s.Size) return HandleResult.Ok;
            if (!sender.TryFetch(connId, c.Buffer)) return Fail("client fetch failed");
            c.Got = _s.Size;
            return RoundDone(sender, connId, c);
        }

        private HandleResult RoundDone(TcpEndpoint sender, ulong connId, Conn c)
        {
            byte[] want = Message(c.Index, c.Round);
            int diff = c.Buffer.AsSpan().CommonPrefixLength(want);
            if (diff != want.Length)
                return Fail($"conn {c.Index} round {c.Round}: byte {diff} is {c.Buffer[diff]}, want {want[diff]}");
            c.Round++;
            c.Got = 0;
            if (c.Round == _s.Rounds)
            {
                Interlocked.Increment(ref Done);
                return HandleResult.Ok;
            }
            HpSockError e = sender.TrySend(connId, Message(c.Index, c.Round));
            return e == HpSockError.None ? HandleResult.Ok : Fail($"client send: {e}");
        }

        public HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
        {
            Closes.Enqueue((connId, operation, error));
            return HandleResult.Ok;
        }

        private HandleResult Fail(string message)
        {
            Errors.Enqueue(message);
            return HandleResult.Error;
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Echo(string name)
    {
        Scenario s = Parse(Fixtures.Lines(File).Single(l => l.Split(' ')[0] == name));
        var timeout = TimeSpan.FromSeconds(60);
        var serverSide = new EchoServerListener();
        var clientSide = new ClientListener(s);
        using var server = Net.Server(serverSide, sv => sv.ReceiveModel = s.Model);
        using var agent = new TcpAgent(clientSide) { Workers = 2, ReceiveModel = s.Model };
        agent.Start();
        int port = server.ListenAddress.Port;
        var ids = new ulong[s.Conns];
        for (int c = 0; c < s.Conns; c++)
        {
            ids[c] = agent.Connect("127.0.0.1", port);
            clientSide.Add(ids[c], c);
        }
        Deadline.Until(() => Volatile.Read(ref clientSide.Connected) == s.Conns || !clientSide.Closes.IsEmpty, "connections", timeout);
        Assert.Empty(clientSide.Closes);
        for (int c = 0; c < s.Conns; c++) agent.Send(ids[c], clientSide.Message(c, 0));

        Deadline.Until(() => Volatile.Read(ref clientSide.Done) == s.Conns || !clientSide.Errors.IsEmpty
                             || !serverSide.Errors.IsEmpty || !clientSide.Closes.IsEmpty, "all rounds", timeout);
        Assert.Empty(clientSide.Errors);
        Assert.Empty(serverSide.Errors);
        Assert.Empty(clientSide.Closes);

        foreach (ulong id in ids) Assert.True(agent.Disconnect(id), "disconnect");
        Deadline.Until(() => clientSide.Closes.Count >= s.Conns && serverSide.Closes.Count >= s.Conns, "closes", timeout);
        agent.Stop();
        server.Stop();

        // Exactly one CLOSE per connection on each side, every one normal.
        Assert.Equal(ids.OrderBy(x => x), clientSide.Closes.Select(x => x.Conn).OrderBy(x => x));
        Assert.All(clientSide.Closes, x => Assert.Equal((SocketOperation.Close, HpSockError.None), (x.Op, x.Error)));
        Assert.Equal(s.Conns, serverSide.Closes.Select(x => x.Conn).Distinct().Count());
        Assert.Equal(s.Conns, serverSide.Closes.Count);
        Assert.All(serverSide.Closes, x => Assert.Equal(HpSockError.None, x.Error));
    }
}
