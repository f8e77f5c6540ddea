// EchoServer - the hpsock echo server in C#: every byte received is sent back.
//
//   EchoServer [--host H] [--port P] [--workers N] [--mode push|pack]
//              [--flag F] [--max-pack B]
//
// Prints "listening on HOST:PORT" once ready (port 0 picks a free port) and
// runs until SIGINT or SIGTERM. In pack mode every frame is echoed as one
// frame. Same command line as examples/echo_server.c. Reading pauses
// automatically while a client's echo waits unsent, so a client that does
// not read is slowed down, never dropped.
using System.Runtime.InteropServices;
using HpSock;

string host = "127.0.0.1";
int port = 0, workers = 0, flag = 0, maxPack = 0;
ReceiveModel model = ReceiveModel.Push;
for (int i = 0; i < args.Length; i += 2)
{
    if (i + 1 >= args.Length) return Usage();
    string v = args[i + 1];
    switch (args[i])
    {
        case "--host": host = v; break;
        case "--port": if (!int.TryParse(v, out port) || port is < 0 or > 65535) return Usage(); break;
        case "--workers": if (!int.TryParse(v, out workers)) return Usage(); break;
        case "--mode":
            if (v == "push") model = ReceiveModel.Push;
            else if (v == "pack") model = ReceiveModel.Pack;
            else return Usage();
            break;
        case "--flag": if (!int.TryParse(v, out flag)) return Usage(); break;
        case "--max-pack": if (!int.TryParse(v, out maxPack)) return Usage(); break;
        default: return Usage();
    }
}

try
{
    using var server = new TcpServer(new EchoListener());
    if (workers > 0) server.Workers = workers;
    server.ReceiveModel = model;
    // A client that reads slower than it writes would make the echo queue
    // without bound (and the send fail with SendQueueFull); with this the
    // engine stops reading from it while its unsent bytes are above the high
    // water mark, and TCP slows the client down instead.
    server.AutoPause = true;
    if (model == ReceiveModel.Pack)
    {
        server.PackFlag = flag;
        if (maxPack > 0) server.PackMaxSize = maxPack;
    }
    // The listener implements only OnReceive, so only RECEIVE (plus CLOSE and
    // SHUTDOWN, always on) crosses into managed code.
    server.Start(host, port);
    var address = server.ListenAddress;
    Console.WriteLine($"listening on {address.Address}:{address.Port}");

    using var stop = new ManualResetEventSlim();
    using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
    using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
    stop.Wait();
    server.Stop();
    return 0;
}
catch (HpSockException e)
{
    Console.Error.WriteLine($"EchoServer: {e.Message}");
    return 1;
}

static int Usage()
{
    Console.Error.WriteLine("usage: EchoServer [--host H] [--port P] [--workers N] [--mode push|pack] [--flag F] [--max-pack B]");
    return 64;
}

/// <summary>Echoes every receive (push: the bytes; pack: the frame).</summary>
sealed class EchoListener : IListener
{
    public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data) =>
        sender.TrySend(connId, data) == HpSockError.None ? HandleResult.Ok : HandleResult.Error;
}
