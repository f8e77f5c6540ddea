// TlsTests.cs - TLS through the C# API: an echo through a TLS server and
// client, a clear close error with its reason, string options and
// configuration errors. Certificates: tests/fixtures/tls (see gen.sh there).
using System.Collections.Concurrent;
using HpSock;

namespace HpSock.Tests;

public class TlsTests
{
    private static string Tls(string name) => Fixtures.PathOf(Path.Combine("tls", name));

    private static TcpServer EchoServer(Recorder rec)
    {
        rec.Receive = (s, id, d) => s.TrySend(id, d) == HpSockError.None ? HandleResult.Ok : HandleResult.Error;
        var server = new TcpServer(rec)
        {
            Workers = 1,
            Tls = true,
            TlsCertificateFile = Tls("server.pem"),
            TlsKeyFile = Tls("server.key"),
        };
        return server;
    }

    [Fact]
    public void EchoThroughTlsServerAndClient()
    {
        var srvRec = new Recorder();
        var cliRec = new Recorder();
        var handshakes = new ConcurrentQueue<string>();
        cliRec.HandShake = (ep, id) =>
        {
            handshakes.Enqueue(ep.GetTlsInfo(id, TlsInfoKind.Version) + "|" + ep.GetTlsInfo(id, TlsInfoKind.PeerSubject));
            return HandleResult.Ok;
        };
        using var server = EchoServer(srvRec);
        using var client = new TcpClient(cliRec) { Tls = true, TlsCaFile = Tls("ca.pem"), TlsServerName = "localhost" };
        server.Start("127.0.0.1", 0);
        client.Start("127.0.0.1", server.ListenAddress.Port);
        Deadline.Until(() => handshakes.Count == 1, "the client's handshake");
        Assert.True(handshakes.TryPeek(out string? hs));
        Assert.StartsWith("TLSv1.", hs);
        Assert.Contains("CN=localhost", hs);
        byte[] payload = new byte[100_000];
        for (int i = 0; i < payload.Length; i++) payload[i] = (byte)(i * 31 + (i >> 8));
        client.Send(payload);
        Deadline.Until(() => cliRec.Events.Where(e => e.Kind == EventKinds.Receive).Sum(e => e.Data!.Length) >= payload.Length, "the echo");
        byte[] got = cliRec.Events.Where(e => e.Kind == EventKinds.Receive).SelectMany(e => e.Data!).ToArray();
        Assert.Equal(payload, got);
        Assert.Equal("localhost", client.GetTlsInfo(0, TlsInfoKind.ServerName));
        // graceful: close_notify, a normal close for the server
        client.Disconnect(0);
        Ev close = srvRec.WaitFor(EventKinds.Close);
        Assert.Equal((SocketOperation.Receive, HpSockError.None), (close.Op, close.Error));
    }

    [Fact]
    public void WrongCaIsAVerifyCloseErrorWithAReason()
    {
        var srvRec = new Recorder();
        var agRec = new Recorder();
        var closes = new ConcurrentQueue<(SocketOperation, HpSockError, string)>();
        agRec.Close = (ep, id, op, err) => closes.Enqueue((op, err, ep.GetTlsError(id)));
        using var server = EchoServer(srvRec);
        using var agent = new TcpAgent(agRec) { Tls = true, TlsCaFile = Tls("wrong_ca.pem") };
        server.Start("127.0.0.1", 0);
        agent.Start();
        agent.Connect("127.0.0.1", server.ListenAddress.Port);
        Deadline.Until(() => closes.Count == 1, "the agent's close");
        Assert.True(closes.TryPeek(out var c));
        Assert.Equal(SocketOperation.Connect, c.Item1);
        Assert.Equal(HpSockError.TlsVerify, c.Item2);
        Assert.StartsWith("certificate verify failed", c.Item3);
        Assert.Equal("HPS_ETLSVERIFY", HpSockException.GetName(HpSockError.TlsVerify));
        Assert.Equal(0, agRec.Count(EventKinds.HandShake));
    }

    [Fact]
    public void StringOptionsAndConfigurationErrors()
    {
        using (var s = new TcpServer(new Recorder()))
        {
            Assert.Equal("", s.GetOption(StringOption.TlsCiphers));
            s.SetOption(StringOption.TlsCiphers, "HIGH:!aNULL");
            Assert.Equal("HIGH:!aNULL", s.GetOption(StringOption.TlsCiphers));
            s.SetOption(StringOption.TlsCiphers, null);
            Assert.Equal("", s.GetOption(StringOption.TlsCiphers));
            Assert.Equal(TlsVerify.None, s.TlsVerify);
            Assert.Equal(TlsVersion.Tls12, s.TlsMinVersion);
            s.Tls = true;
            s.TlsCertificateFile = Tls("server.pem");
            s.TlsKeyFile = Tls("other.key");
            var e = Assert.Throws<HpSockException>(() => s.Start("127.0.0.1", 0));
            Assert.Equal(HpSockError.TlsConfig, e.Error);
            Assert.Contains("mismatch", s.TlsConfigError);
            s.AddTlsCertificate("*.sni.test", Tls("other.pem"), Tls("other.key"));
            Assert.Equal(HpSockError.InvalidArgument,
                Assert.Throws<HpSockException>(() => s.AddTlsCertificate("", "c", "k")).Error);
        }
        using (var a = new TcpAgent(new Recorder()))
        {
            Assert.Equal(TlsVerify.Peer, a.TlsVerify);
            Assert.False(a.Tls);
            Assert.Equal(HpSockError.InvalidArgument,
                Assert.Throws<HpSockException>(() => a.GetOption((StringOption)90)).Error);
        }
    }
}
