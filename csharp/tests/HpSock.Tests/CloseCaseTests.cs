// CloseCaseTests.cs - tests/fixtures/close/cases.txt: what the close event
// says (operation and error) for each way a connection ends.
using System.Net;
using System.Net.Sockets;
using HpSock;

namespace HpSock.Tests;

public class CloseCaseTests
{
    private const string File = "close/cases.txt";

    public static IEnumerable<object[]> Names() => Fixtures.Lines(File).Select(l => new object[] { l.Split(' ')[0] });

    [Theory]
    [MemberData(nameof(Names))]
    public void Close(string name)
    {
        string line = Fixtures.Lines(File).Single(l => l.Split(' ')[0] == name);
        string op = "", error = "";
        foreach (string field in line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
        {
            if (field.StartsWith("op=")) op = field[3..];
            else if (field.StartsWith("error=")) error = field[6..];
            else throw new InvalidDataException($"{name}: unknown field '{field}'");
        }
        Ev close = Run(name);
        Assert.Equal(op, close.Op.ToString().ToUpperInvariant());
        string have = close.Error == HpSockError.None ? "0" : HpSockException.GetName(close.Error);
        Assert.Equal(error, have);
    }

    /// <summary>Runs a case's procedure; returns the CLOSE it checks.</summary>
    private static Ev Run(string name) => name switch
    {
        "peer_close" => WithPeer(null, (server, peer, id) => peer.Close()),
        "local_disconnect" => WithPeer(null, (server, peer, id) => Assert.True(server.Disconnect(id))),
        "local_disconnect_force" => WithPeer(null, (server, peer, id) => Assert.True(server.Disconnect(id, force: true))),
        "stop" => WithPeer(null, (server, peer, id) => server.Stop()),
        "peer_reset" => WithPeer(null, (server, peer, id) =>
        {
            peer.LingerState = new LingerOption(true, 0);
            peer.Close();
        }),
        "handler_error" => HandlerError(),
        "connect_refused" => ConnectRefused(),
        "connect_timeout" => ConnectTimeout(),
        "disconnect_silent" => WithPeer(null, (server, peer, id) =>
        {
            Deadline.Until(() => server.GetStats(id).Silence >= TimeSpan.FromMilliseconds(100), "100 ms of silence");
            Assert.Equal(1, server.DisconnectSilent(TimeSpan.FromMilliseconds(100)));
        }),
        "silence_timeout" => WithPeer(s => s.SilenceTimeout = TimeSpan.FromMilliseconds(200), (server, peer, id) => { }),
        "pull_full" => WithPeer(s =>
        {
            s.ReceiveModel = ReceiveModel.Pull;
            s.PullMaxSize = 1000;
        }, (server, peer, id) => peer.Send(new byte[1500])),
        "pack_bad_flag" => WithPeer(s =>
        {
            s.ReceiveModel = ReceiveModel.Pack;
            s.PackFlag = 1;
        }, (server, peer, id) => peer.Send(Convert.FromHexString("0100800041"))),
        "pack_oversize" => WithPeer(s =>
        {
            s.ReceiveModel = ReceiveModel.Pack;
            s.PackMaxSize = 16;
        }, (server, peer, id) => peer.Send(Convert.FromHexString("11000000"))),
        "pack_empty" => WithPeer(s => s.ReceiveModel = ReceiveModel.Pack,
            (server, peer, id) => peer.Send(Convert.FromHexString("00000000"))),
        _ => throw new InvalidDataException($"unknown close case '{name}': add its procedure"),
    };

    /// <summary>A push server (unless configured otherwise) and one plain
    /// peer; act ends the connection; returns the server's CLOSE.</summary>
    private static Ev WithPeer(Action<TcpServer>? configure, Action<TcpServer, Socket, ulong> act)
    {
        var rec = new Recorder();
        using var server = Net.Server(rec, configure);
        using Socket peer = Net.Peer(server);
        ulong id = rec.WaitFor(EventKinds.Accept).Conn;
        act(server, peer, id);
        Ev close = rec.WaitFor(EventKinds.Close, id);
        server.Stop();
        Assert.Equal(1, rec.Events.Count(e => e.Kind == EventKinds.Close && e.Conn == id));
        return close;
    }

    private static Ev HandlerError()
    {
        var rec = new Recorder { Receive = (s, id, data) => HandleResult.Error };
        using var server = Net.Server(rec);
        using Socket peer = Net.Peer(server);
        peer.Send(new byte[] { 1, 2, 3 });
        Ev close = rec.WaitFor(EventKinds.Close);
        server.Stop();
        return close;
    }

    private static Ev ConnectRefused()
    {
        // A bound socket that does not listen: the port is ours, nobody accepts.
        using var bound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        bound.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)bound.LocalEndPoint!).Port;
        var rec = new Recorder();
        using var agent = new TcpAgent(rec) { Workers = 1 };
        agent.Start();
        ulong id = agent.Connect("127.0.0.1", port);
        Ev close = rec.WaitFor(EventKinds.Close, id);
        Assert.Equal(0, rec.Count(EventKinds.Connect));
        return close;
    }

    private static Ev ConnectTimeout()
    {
        // Backlog 0 and an accept queue filled by connections nobody accepts:
        // the agent's SYN is dropped, so only the connect timeout ends it.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var target = (IPEndPoint)listener.LocalEndPoint!;
        var fillers = new List<Socket>();
        try
        {
            for (int i = 0; i < 4; i++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(s);
                _ = s.ConnectAsync(target); // the later ones stay in SYN_SENT
            }
            var rec = new Recorder();
            using var agent = new TcpAgent(rec) { Workers = 1, ConnectTimeout = TimeSpan.FromMilliseconds(200) };
            agent.Start();
            ulong id = agent.Connect("127.0.0.1", target.Port);
            return rec.WaitFor(EventKinds.Close, id);
        }
        finally
        {
            foreach (var s in fillers) s.Dispose();
        }
    }
}
