// Support.cs - helpers shared by the tests: fixture files, deadlines, an
// event-recording listener, plain-socket peers.
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using HpSock;

// Endpoints start loop threads and the timing-based close cases should not
// compete with other tests for the two cores.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace HpSock.Tests;

internal static class Fixtures
{
    /// <summary>tests/fixtures: $HPS_FIXTURES, else found above the test binary.</summary>
    public static string Dir { get; } = Find();

    public static string PathOf(string relative) => Path.Combine(Dir, relative);

    /// <summary>The non-blank, non-comment lines of a fixture file.</summary>
    public static IEnumerable<string> Lines(string relative) =>
        File.ReadLines(PathOf(relative)).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'));

    private static string Find()
    {
        string? env = Environment.GetEnvironmentVariable("HPS_FIXTURES");
        if (!string.IsNullOrEmpty(env)) return env;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string p = Path.Combine(d.FullName, "tests", "fixtures");
            if (File.Exists(Path.Combine(p, "README.md"))) return p;
        }
        throw new InvalidOperationException("tests/fixtures not found: set HPS_FIXTURES");
    }

    public static byte[] Hex(string s)
    {
        s = string.Concat(s.Where(c => !char.IsWhiteSpace(c)));
        if (s == "-") return Array.Empty<byte>();
        return Convert.FromHexString(s);
    }
}

internal static class Deadline
{
    public static readonly TimeSpan Default = TimeSpan.FromSeconds(20);

    /// <summary>Polls until cond holds or the deadline passes.</summary>
    public static void Until(Func<bool> cond, string what, TimeSpan? timeout = null)
    {
        var end = DateTime.UtcNow + (timeout ?? Default);
        int spin = 0;
        while (!cond())
        {
            if (DateTime.UtcNow > end) Assert.Fail($"timed out waiting for {what}");
            Thread.Sleep(spin++ < 10 ? 1 : 5);
        }
    }
}

/// <summary>One event as a test sees it.</summary>
internal sealed record Ev(EventKinds Kind, ulong Conn, SocketOperation Op = SocketOperation.Unknown,
    HpSockError Error = HpSockError.None, byte[]? Data = null, long Available = 0, nint Socket = 0)
{
    public override string ToString() => $"{Kind} conn={Conn:x} op={Op} error={Error} len={Data?.Length ?? Available}";
}

internal delegate HandleResult ReceiveHandler(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data);

/// <summary>Implements every event: records it, then runs the optional
/// behaviour for it.</summary>
internal class Recorder : IListener
{
    private readonly List<Ev> _events = new();

    public ReceiveHandler? Receive;
    public Func<TcpEndpoint, ulong, HandleResult>? Accept;
    public Func<TcpEndpoint, ulong, HandleResult>? Connect;
    public Func<TcpEndpoint, ulong, HandleResult>? HandShake;
    public Func<TcpEndpoint, ulong, nint, HandleResult>? Prepare;
    public Action<TcpEndpoint, ulong, SocketOperation, HpSockError>? Close;
    public Action<TcpEndpoint>? Shutdown;
    public bool RecordData = true;

    public Ev[] Events
    {
        get { lock (_events) return _events.ToArray(); }
    }

    public int Count(EventKinds kind) => Events.Count(e => e.Kind == kind);

    private void Add(Ev e)
    {
        lock (_events) _events.Add(e);
    }

    /// <summary>Waits for the first event matching pred.</summary>
    public Ev WaitFor(Func<Ev, bool> pred, string what, TimeSpan? timeout = null)
    {
        Ev? found = null;
        Deadline.Until(() => (found = Events.FirstOrDefault(pred)) != null, what, timeout);
        return found!;
    }

    public Ev WaitFor(EventKinds kind, ulong conn = 0, TimeSpan? timeout = null) =>
        WaitFor(e => e.Kind == kind && (conn == 0 || e.Conn == conn), $"{kind} (conn {conn:x})", timeout);

    public virtual HandleResult OnPrepare(TcpEndpoint sender, ulong connId, nint socket)
    {
        Add(new Ev(EventKinds.Prepare, connId, Socket: socket));
        return Prepare?.Invoke(sender, connId, socket) ?? HandleResult.Ok;
    }

    public virtual HandleResult OnAccept(TcpEndpoint sender, ulong connId)
    {
        Add(new Ev(EventKinds.Accept, connId));
        return Accept?.Invoke(sender, connId) ?? HandleResult.Ok;
    }

    public virtual HandleResult OnConnect(TcpEndpoint sender, ulong connId)
    {
        Add(new Ev(EventKinds.Connect, connId));
        return Connect?.Invoke(sender, connId) ?? HandleResult.Ok;
    }

    public virtual HandleResult OnHandShake(TcpEndpoint sender, ulong connId)
    {
        Add(new Ev(EventKinds.HandShake, connId));
        return HandShake?.Invoke(sender, connId) ?? HandleResult.Ok;
    }

    public virtual HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
    {
        Add(new Ev(EventKinds.Receive, connId, Data: RecordData ? data.ToArray() : null, Available: data.Length));
        return Receive?.Invoke(sender, connId, data) ?? HandleResult.Ok;
    }

    public virtual HandleResult OnReceive(TcpEndpoint sender, ulong connId, long available)
    {
        Add(new Ev(EventKinds.Receive, connId, Available: available));
        return HandleResult.Ok;
    }

    public virtual HandleResult OnSend(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
    {
        Add(new Ev(EventKinds.Send, connId, Data: RecordData ? data.ToArray() : null));
        return HandleResult.Ok;
    }

    public virtual HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
    {
        Add(new Ev(EventKinds.Close, connId, operation, error));
        Close?.Invoke(sender, connId, operation, error);
        return HandleResult.Ok;
    }

    public virtual HandleResult OnShutdown(TcpEndpoint sender)
    {
        Add(new Ev(EventKinds.Shutdown, 0));
        Shutdown?.Invoke(sender);
        return HandleResult.Ok;
    }

    /// <summary>Recorded with the unsent bytes in <see cref="Ev.Available"/>.</summary>
    public virtual HandleResult OnHighWater(TcpEndpoint sender, ulong connId, long unsent)
    {
        Add(new Ev(EventKinds.HighWater, connId, Available: unsent));
        return HandleResult.Ok;
    }

    /// <summary>Recorded with the unsent bytes in <see cref="Ev.Available"/>.</summary>
    public virtual HandleResult OnLowWater(TcpEndpoint sender, ulong connId, long unsent)
    {
        Add(new Ev(EventKinds.LowWater, connId, Available: unsent));
        return HandleResult.Ok;
    }
}

internal static class Net
{
    /// <summary>A started server on 127.0.0.1, port 0.</summary>
    public static TcpServer Server(IListener listener, Action<TcpServer>? configure = null, int workers = 2)
    {
        var server = new TcpServer(listener) { Workers = workers };
        configure?.Invoke(server);
        server.Start("127.0.0.1", 0);
        return server;
    }

    /// <summary>A plain blocking socket connected to the server.</summary>
    public static Socket Peer(TcpServer server)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        s.ReceiveTimeout = (int)Deadline.Default.TotalMilliseconds;
        s.Connect(new IPEndPoint(IPAddress.Loopback, server.ListenAddress.Port));
        return s;
    }

    /// <summary>Reads exactly n bytes from a plain socket.</summary>
    public static byte[] ReadExactly(Socket s, int n)
    {
        var buf = new byte[n];
        int got = 0;
        while (got < n)
        {
            int r = s.Receive(buf, got, n - got, SocketFlags.None);
            if (r == 0) throw new IOException($"peer closed after {got} of {n} bytes");
            got += r;
        }
        return buf;
    }

    public static byte[] PackFrame(ReadOnlySpan<byte> body, int flag = 0)
    {
        var f = new byte[4 + body.Length];
        BitConverter.TryWriteBytes(f, (uint)(flag << 22) | (uint)body.Length);
        body.CopyTo(f.AsSpan(4));
        return f;
    }
}
