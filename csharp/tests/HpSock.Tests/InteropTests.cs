// InteropTests.cs - a C# client against the C example echo server
// (examples/echo_server.c; CTest passes its path in HPS_ECHO_SERVER).
using System.Diagnostics;
using System.Text.RegularExpressions;
using HpSock;

namespace HpSock.Tests;

/// <summary>A fact that is skipped when HPS_ECHO_SERVER is not set (CTest
/// always sets it).</summary>
public sealed class EchoServerFactAttribute : FactAttribute
{
    public EchoServerFactAttribute()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("HPS_ECHO_SERVER")))
            Skip = "HPS_ECHO_SERVER is not set (the path of the C example echo server)";
    }
}

public sealed class InteropTests
{
    /// <summary>Runs the C echo server; returns it and the port it printed.</summary>
    private static (Process Process, int Port) StartCServer(params string[] extra)
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("HPS_ECHO_SERVER")!)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "--host", "127.0.0.1", "--port", "0", "--workers", "2" }.Concat(extra))
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var line = p.StandardOutput.ReadLineAsync();
        Assert.True(line.Wait(Deadline.Default), "the C echo server printed no ready line");
        Match m = Regex.Match(line.Result ?? "", @"^listening on (.+):(\d+)$");
        Assert.True(m.Success, $"unexpected ready line '{line.Result}'");
        Assert.Equal("127.0.0.1", m.Groups[1].Value);
        return (p, int.Parse(m.Groups[2].Value));
    }

    private static void StopCServer(Process p)
    {
        if (!p.HasExited) p.Kill();
        p.WaitForExit();
        p.Dispose();
    }

    [EchoServerFact]
    public void CSharpClientsRoundTripThroughTheCEchoServer()
    {
        var (proc, port) = StartCServer();
        try
        {
            const int clients = 4, rounds = 50, size = 3000;
            var recs = new Recorder[clients];
            var cs = new TcpClient[clients];
            try
            {
                for (int c = 0; c < clients; c++)
                {
                    recs[c] = new Recorder();
                    cs[c] = new TcpClient(recs[c]);
                    cs[c].Start("127.0.0.1", port);
                }
                for (int c = 0; c < clients; c++) recs[c].WaitFor(EventKinds.Connect);
                for (int r = 0; r < rounds; r++)
                {
                    for (int c = 0; c < clients; c++)
                    {
                        var msg = new byte[size];
                        for (int j = 0; j < size; j++) msg[j] = EchoScenarioTests.Payload(c, r, j);
                        cs[c].Send(msg);
                    }
                }
                for (int c = 0; c < clients; c++)
                {
                    Recorder rec = recs[c];
                    Deadline.Until(() => rec.Events.Where(e => e.Kind == EventKinds.Receive).Sum(e => e.Data!.Length) == rounds * size,
                        $"client {c}'s echo");
                    byte[] got = rec.Events.Where(e => e.Kind == EventKinds.Receive).SelectMany(e => e.Data!).ToArray();
                    for (int i = 0; i < got.Length; i++)
                        Assert.True(got[i] == EchoScenarioTests.Payload(c, i / size, i % size), $"client {c}: byte {i} differs");
                }
                for (int c = 0; c < clients; c++)
                {
                    Assert.True(cs[c].Disconnect());
                    Ev close = recs[c].WaitFor(EventKinds.Close);
                    Assert.Equal((SocketOperation.Close, HpSockError.None), (close.Op, close.Error));
                }
            }
            finally
            {
                foreach (var c in cs) c?.Dispose();
            }
        }
        finally
        {
            StopCServer(proc);
        }
    }

    [EchoServerFact]
    public void PackFramesRoundTripThroughTheCEchoServer()
    {
        var (proc, port) = StartCServer("--mode", "pack", "--flag", "5");
        try
        {
            var rec = new Recorder();
            using var client = new TcpClient(rec) { ReceiveModel = ReceiveModel.Pack, PackFlag = 5 };
            client.Start("127.0.0.1", port);
            rec.WaitFor(EventKinds.Connect);
            var sizes = new[] { 1, 64, 1000, 70000, 262144 };
            foreach (int n in sizes) client.Send(Enumerable.Range(0, n).Select(i => (byte)(i * 7 + n)).ToArray());
            Deadline.Until(() => rec.Count(EventKinds.Receive) == sizes.Length, "frames");
            Ev[] frames = rec.Events.Where(e => e.Kind == EventKinds.Receive).ToArray();
            for (int k = 0; k < sizes.Length; k++)
                Assert.Equal(Enumerable.Range(0, sizes[k]).Select(i => (byte)(i * 7 + sizes[k])).ToArray(), frames[k].Data);
            client.Stop();
            Assert.Equal(SocketOperation.Close, rec.WaitFor(EventKinds.Close).Op);
        }
        finally
        {
            StopCServer(proc);
        }
    }

    [EchoServerFact]
    public void AServerThatGoesAwayClosesTheClientConnection()
    {
        var (proc, port) = StartCServer();
        var rec = new Recorder();
        using var client = new TcpClient(rec);
        client.Start("127.0.0.1", port);
        rec.WaitFor(EventKinds.Connect);
        StopCServer(proc);
        Ev close = rec.WaitFor(EventKinds.Close);
        Assert.Equal(SocketOperation.Receive, close.Op);
    }
}
