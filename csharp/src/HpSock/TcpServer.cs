// TcpServer.cs - the server role: listens and accepts many connections.
using System;
using System.Net;

namespace HpSock
{
    /// <summary>A TCP server: listens on one address and accepts many
    /// connections, spread over its worker loops.</summary>
    /// <example>
    /// <code>
    /// sealed class Echo : IListener
    /// {
    ///     public HandleResult OnReceive(TcpEndpoint sender, ulong connId, ReadOnlySpan&lt;byte&gt; data) =>
    ///         sender.TrySend(connId, data) == HpSockError.None ? HandleResult.Ok : HandleResult.Error;
    /// }
    /// using var server = new TcpServer(new Echo());
    /// server.Start("127.0.0.1", 0);
    /// Console.WriteLine($"listening on {server.ListenAddress}");
    /// </code>
    /// </example>
    public sealed class TcpServer : TcpEndpoint
    {
        /// <summary>Creates a server whose events go to <paramref name="listener"/>.</summary>
        /// <param name="listener">The handler.</param>
        public TcpServer(IListener listener) : base(EndpointRole.Server, listener)
        {
        }

        /// <summary>Binds and listens. A null or empty host means all IPv4
        /// addresses; "::" all IPv6 (dual stack unless
        /// <see cref="TcpEndpoint.IPv6Only"/>). Port 0 picks a free port: read
        /// it back with <see cref="ListenAddress"/>. A stopped server may be
        /// started again.</summary>
        /// <param name="host">A numeric address or a host name (resolved synchronously).</param>
        /// <param name="port">The port, or 0.</param>
        /// <exception cref="HpSockException">For example EADDRINUSE,
        /// <see cref="HpSockError.Address"/> or <see cref="HpSockError.InvalidState"/>.</exception>
        public void Start(string? host, int port) => StartCore(host, port);

        /// <summary>Serves another certificate to clients asking for server name
        /// <paramref name="name"/> (SNI). Before Start.</summary>
        /// <param name="name">A host name, or "*.domain" for one label under domain; case is ignored.</param>
        /// <param name="certificate">PEM text (beginning with "-----BEGIN") or a file path.</param>
        /// <param name="key">PEM text or a file path.</param>
        public void AddTlsCertificate(string name, string certificate, string key) =>
            AddTlsCertificateCore(name, certificate, key);

        /// <summary>The address the running server listens on.</summary>
        public IPEndPoint ListenAddress => ListenAddressCore();
    }
}
