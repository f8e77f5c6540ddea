// TcpClient.cs - the client role: one outbound connection.
using System;

namespace HpSock
{
    /// <summary>A TCP client: owns one outbound connection. The connection's
    /// operations are available without an ID (ID 0 means "the client's
    /// current connection"); the inherited ones taking an ID work too.</summary>
    public sealed class TcpClient : TcpEndpoint
    {
        /// <summary>Creates a client whose events go to <paramref name="listener"/>.</summary>
        /// <param name="listener">The handler.</param>
        public TcpClient(IListener listener) : base(EndpointRole.Client, listener)
        {
        }

        /// <summary>Starts the client and connects to host:port. A connect event,
        /// or a close event with operation <see cref="SocketOperation.Connect"/>,
        /// follows. A stopped client may be started again.</summary>
        /// <param name="host">A numeric address or a host name (resolved synchronously).</param>
        /// <param name="port">The port, 1..65535.</param>
        public void Start(string host, int port)
        {
            ArgumentNullException.ThrowIfNull(host);
            StartCore(host, port);
        }

        /// <summary>The current connection's ID, or 0 when there is none.</summary>
        public ulong ConnectionId
        {
            get
            {
                ulong[] ids = GetConnectionIds();
                return ids.Length > 0 ? ids[0] : 0;
            }
        }

        /// <summary>Sends bytes on the client's connection.</summary>
        /// <param name="data">The bytes; at least one.</param>
        public void Send(ReadOnlySpan<byte> data) => Send(0, data);

        /// <summary>Sends <paramref name="count"/> bytes of
        /// <paramref name="buffer"/> from <paramref name="offset"/>.</summary>
        /// <param name="buffer">The buffer.</param>
        /// <param name="offset">Where the bytes start.</param>
        /// <param name="count">How many bytes.</param>
        public void Send(byte[] buffer, int offset, int count) => Send(0, buffer, offset, count);

        /// <summary>As <see cref="Send(ReadOnlySpan{byte})"/>, returning the error.</summary>
        /// <param name="data">The bytes.</param>
        /// <returns><see cref="HpSockError.None"/> or the error.</returns>
        public HpSockError TrySend(ReadOnlySpan<byte> data) => TrySend(0, data);

        /// <summary>Sends several buffers as one contiguous send.</summary>
        /// <param name="buffers">The buffers.</param>
        public void SendV(params ReadOnlySpan<ReadOnlyMemory<byte>> buffers) => SendV(0, buffers);

        /// <summary>Sends part of a file on the client's connection.</summary>
        /// <param name="path">The file.</param>
        /// <param name="offset">Where to start.</param>
        /// <param name="length">How many bytes; negative: to the end.</param>
        public void SendFile(string path, long offset = 0, long length = -1) => SendFile(0, path, offset, length);

        /// <summary>Closes the client's connection (see
        /// <see cref="TcpEndpoint.Disconnect(ulong, bool)"/>).</summary>
        /// <param name="force">Drop unsent bytes.</param>
        /// <returns>False if there was no open connection.</returns>
        public bool Disconnect(bool force = false) => Disconnect(0, force);
    }
}
