// PackVectorTests.cs - tests/fixtures/pack/vectors.txt through sockets: a
// C# pack-model server configured with the case's flag and max receives the
// case's input from a plain socket (whole, split at several boundaries, and
// one byte per send) and must deliver exactly the case's frames, then close
// with the case's error (or normally, once the peer closes, for NONE cases).
// `pending` is not observable through a socket.
using System.Collections.Concurrent;
using System.Net.Sockets;
using HpSock;

namespace HpSock.Tests;

public class PackVectorTests
{
    private const string File = "pack/vectors.txt";

    internal sealed record Vector(string Name, int Flag, int Max, byte[] Input, byte[][] Frames, string Error);

    public static IEnumerable<object[]> Names() => Fixtures.Lines(File).Select(l => new object[] { l.Split('|')[0].Trim() });

    internal static Vector Parse(string line)
    {
        string[] f = line.Split('|').Select(x => x.Trim()).ToArray();
        Assert.True(f.Length == 6, $"malformed case: {line[..Math.Min(line.Length, 60)]}");
        int flag = -1, max = -1;
        foreach (string kv in f[1].Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] p = kv.Split('=');
            if (p[0] == "flag") flag = int.Parse(p[1]);
            else if (p[0] == "max") max = int.Parse(p[1]);
            else throw new InvalidDataException($"{f[0]}: unknown config '{kv}'");
        }
        Assert.StartsWith("frames=", f[3]);
        Assert.StartsWith("error=", f[4]);
        string frames = f[3]["frames=".Length..].Trim();
        byte[][] bodies = frames == "-" ? Array.Empty<byte[]>() : frames.Split(',').Select(Fixtures.Hex).ToArray();
        string error = f[4]["error=".Length..].Trim();
        Assert.Contains(error, new[] { "NONE", "EPACKFLAG", "EPACKSIZE", "EPACKEMPTY" });
        return new Vector(f[0], flag, max, Fixtures.Hex(f[2]), bodies, error);
    }

    private sealed class Collector : IListener
    {
        public readonly ConcurrentDictionary<ulong, List<byte[]>> Frames = new();
        public readonly BlockingCollection<(ulong Conn, SocketOperation Op, HpSockError Error)> Closes = new();

        public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan<byte> data)
        {
            Frames.GetOrAdd(connId, _ => new List<byte[]>()).Add(data.ToArray());
            return HandleResult.Ok;
        }

        public HandleResult OnClose(TcpEndpoint sender, ulong connId, SocketOperation operation, HpSockError error)
        {
            Closes.Add((connId, operation, error));
            return HandleResult.Ok;
        }
    }

    /// <summary>The ways the input is cut into sends.</summary>
    private static IEnumerable<(string How, List<byte[]> Parts)> Feeds(byte[] input)
    {
        yield return ("whole", new List<byte[]> { input });
        var cuts = new SortedSet<int> { 1, 2, 3, 4, 5, 7, input.Length / 2, input.Length - 1 };
        foreach (int k in cuts.Where(k => k > 0 && k < input.Length))
            yield return ($"split at {k}", new List<byte[]> { input[..k], input[k..] });
        if (input.Length > 1 && input.Length <= 2048)
            yield return ("bytewise", input.Select(b => new[] { b }).ToList());
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Vectors(string name)
    {
        Vector v = Parse(Fixtures.Lines(File).Single(l => l.Split('|')[0].Trim() == name));
        var sink = new Collector();
        using var server = Net.Server(sink, s =>
        {
            s.ReceiveModel = ReceiveModel.Pack;
            s.PackFlag = v.Flag;
            s.PackMaxSize = v.Max;
        }, workers: 1);

        foreach (var (how, parts) in Feeds(v.Input))
        {
            using (Socket peer = Net.Peer(server))
            {
                try
                {
                    foreach (byte[] part in parts)
                        if (part.Length > 0) peer.Send(part);
                }
                catch (SocketException)
                {
                    // the server may close on a bad header before every byte went out
                }
                if (v.Error == "NONE") peer.Shutdown(SocketShutdown.Send);
                Assert.True(sink.Closes.TryTake(out var close, Deadline.Default), $"{how}: no CLOSE");
                sink.Frames.TryRemove(close.Conn, out List<byte[]>? got);
                got ??= new List<byte[]>();

                Assert.True(v.Frames.Length == got.Count,
                    $"{how}: {got.Count} frames delivered, want {v.Frames.Length}");
                for (int i = 0; i < got.Count; i++)
                    Assert.True(v.Frames[i].AsSpan().SequenceEqual(got[i]), $"{how}: frame {i} differs");
                Assert.Equal(SocketOperation.Receive, close.Op);
                string want = v.Error == "NONE" ? "0" : "HPS_" + v.Error;
                string have = close.Error == HpSockError.None ? "0" : HpSockException.GetName(close.Error);
                Assert.True(want == have, $"{how}: close error {have}, want {want}");
            }
        }
    }
}
