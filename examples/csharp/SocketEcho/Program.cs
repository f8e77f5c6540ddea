// SocketEcho - an echo server on System.Net.Sockets, written the way .NET
// recommends for a high-throughput server: one async loop per connection,
// await Socket.ReceiveAsync / SendAsync on Memory<byte> (the ValueTask
// overloads, which allocate nothing per operation), one pooled buffer per
// connection (ArrayPool), continuations on the thread pool.
//
//   SocketEcho [--host H] [--port P] [--workers N]
//
// Prints "listening on HOST:PORT" once ready and runs until SIGINT or
// SIGTERM. --workers N caps the thread pool (where continuations run) at N
// worker threads; the socket engine's epoll thread(s) come on top, as in any
// .NET server (their count follows DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT).
using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

string host = "127.0.0.1";
int port = 0, workers = 0;
for (int i = 0; i < args.Length; i += 2)
{
    if (i + 1 >= args.Length) return Usage();
    string v = args[i + 1];
    switch (args[i])
    {
        case "--host": host = v; break;
        case "--port": if (!int.TryParse(v, out port) || port is < 0 or > 65535) return Usage(); break;
        case "--workers": if (!int.TryParse(v, out workers) || workers < 0) return Usage(); break;
        default: return Usage();
    }
}

if (workers > 0)
{
    ThreadPool.GetMinThreads(out _, out int minIo);
    ThreadPool.SetMinThreads(workers, minIo);
    if (!ThreadPool.SetMaxThreads(workers, Math.Max(workers, minIo)))
        Console.Error.WriteLine($"SocketEcho: the runtime refused to cap the thread pool at {workers} threads");
}

IPAddress address = IPAddress.TryParse(host, out var parsed) ? parsed : (await Dns.GetHostAddressesAsync(host))[0];
using var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
listener.Bind(new IPEndPoint(address, port));
listener.Listen(1024);
var bound = (IPEndPoint)listener.LocalEndPoint!;
Console.WriteLine($"listening on {bound.Address}:{bound.Port}");

using var stop = new CancellationTokenSource();
using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });

try
{
    while (true)
    {
        Socket socket = await listener.AcceptAsync(stop.Token);
        socket.NoDelay = true;
        _ = EchoAsync(socket);
    }
}
catch (OperationCanceledException)
{
}
return 0;

static async Task EchoAsync(Socket socket)
{
    byte[] buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
    try
    {
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None);
            if (n == 0) break;
            for (int sent = 0; sent < n;)
                sent += await socket.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None);
        }
    }
    catch (SocketException)
    {
        // reset by the peer: just close
    }
    finally
    {
        socket.Dispose();
        ArrayPool<byte>.Shared.Return(buffer);
    }
}

static int Usage()
{
    Console.Error.WriteLine("usage: SocketEcho [--host H] [--port P] [--workers N]");
    return 64;
}
