// TcpEndpoint.cs - what every role shares: life cycle, connection
// operations, options, and the dispatch of native events to the listener.
//
// Lifetime: the native endpoint is owned by an EndpointHandle (SafeHandle);
// its user data is a weak GCHandle to this object. While the endpoint runs
// (from Start until SHUTDOWN) this object also holds a strong GCHandle to
// itself, so a running endpoint is never collected even if the application
// keeps no reference; a stopped, unreferenced one is collected and the
// SafeHandle's finalizer frees the native side.
using System;
using System.Collections.Concurrent;
using System.Net;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using HpSock.Interop;

namespace HpSock
{
    /// <summary>One hpsock TCP endpoint: the operations every role shares.
    /// Use <see cref="TcpServer"/>, <see cref="TcpAgent"/> or
    /// <see cref="TcpClient"/>. Every member may be called from any thread,
    /// including from inside a handler.</summary>
    public abstract unsafe class TcpEndpoint : IDisposable, IEventTarget
    {
        private static readonly ConcurrentDictionary<Type, EventKinds> s_listenerEvents = new();

        /// <summary>The endpoint whose handler this thread is running, if any.
        /// While one of its handlers runs, an endpoint cannot be freed (a free
        /// from elsewhere waits for the stop, which waits for the handler), so
        /// the hot path may use the raw pointer without touching the
        /// SafeHandle's shared reference count.</summary>
        [ThreadStatic]
        private static TcpEndpoint? t_dispatching;

        private readonly EndpointHandle _handle;
        private readonly IntPtr _raw;
        private readonly IListener _listener;
        private readonly object _rootLock = new();
        private GCHandle _root;
        private ReceiveModel _model;
        private int _disposeStarted;
        private volatile bool _disposed;

        private protected TcpEndpoint(EndpointRole role, IListener listener)
        {
            ArgumentNullException.ThrowIfNull(listener);
            _listener = listener;
            Role = role;
            _handle = EndpointHandle.Create((int)role, this);
            _raw = _handle.Raw;
            Events = ListenerEvents(listener.GetType());
        }

        /// <summary>Raised when a handler throws. The event was treated as
        /// <see cref="HandleResult.Error"/>. Runs on the loop thread that ran the
        /// handler. Without a subscriber the exception is written to standard
        /// error.</summary>
        public event EventHandler<HandlerExceptionEventArgs>? HandlerException;

        /// <summary>The endpoint's role.</summary>
        public EndpointRole Role { get; }

        /// <summary>The listener events are delivered to.</summary>
        public IListener Listener => _listener;

        /// <summary>The endpoint's state.</summary>
        public EndpointState State => (EndpointState)Check(hpsock_csharp.hps_state(H), "state");

        /// <summary>True once <see cref="Dispose()"/> has stopped the endpoint
        /// (or begun to, from inside a handler).</summary>
        public bool IsDisposed => _disposed;

        /// <summary>The handle for a call: refused once disposed.</summary>
        private EndpointHandle H
        {
            get
            {
                if (_disposed) ThrowDisposed();
                return _handle;
            }
        }

        private void ThrowDisposed() => throw new ObjectDisposedException(GetType().FullName);

        // ------------------------------------------------------------------
        // Life cycle
        // ------------------------------------------------------------------

        private protected void StartCore(string? host, int port)
        {
            if ((uint)port > ushort.MaxValue) throw new ArgumentOutOfRangeException(nameof(port), port, "0..65535");
            _model = (ReceiveModel)GetOption(EndpointOption.ReceiveModel);
            Root();
            int r;
            try
            {
                r = hpsock_csharp.hps_start(H, host, (ushort)port);
            }
            catch
            {
                UnrootIfIdle();
                throw;
            }
            if (r != 0)
            {
                UnrootIfIdle();
                throw new HpSockException(r, "start");
            }
        }

        /// <summary>Stops the endpoint: stops listening, closes every connection
        /// (each gets its close event), then delivers shutdown. From another
        /// thread it returns after shutdown was delivered; from inside a
        /// handler (of this endpoint or any other) it only begins the stop.
        /// Stopping an endpoint that never
        /// started, or is stopped, does nothing.</summary>
        public void Stop()
        {
            int r = hpsock_csharp.hps_stop(H);
            if (r != 0 && r != (int)HpSockError.InvalidState) throw new HpSockException(r, "stop");
        }

        /// <summary>Waits until the endpoint is stopped (shutdown delivered).</summary>
        /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</param>
        /// <returns>False if the timeout passed first.</returns>
        /// <exception cref="HpSockException">Called from the endpoint's own loop
        /// thread (<see cref="HpSockError.InLoop"/>), where it would wait forever.</exception>
        public bool Wait(TimeSpan timeout)
        {
            int ms = timeout == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue);
            int r = hpsock_csharp.hps_wait(H, ms);
            if (r == (int)HpSockError.TimedOut) return false;
            Check(r, "wait");
            return true;
        }

        /// <summary>Stops the endpoint and frees it. From inside one of its own
        /// handlers the stop is asynchronous and the native endpoint is freed
        /// later from a thread-pool thread; the remaining close and shutdown
        /// events are still delivered to the listener.</summary>
        public void Dispose()
        {
            Dispose(true);
            GC.SuppressFinalize(this);
        }

        /// <summary>Releases the native endpoint.</summary>
        /// <param name="disposing">True from <see cref="Dispose()"/>.</param>
        protected virtual void Dispose(bool disposing)
        {
            if (!disposing || Interlocked.Exchange(ref _disposeStarted, 1) != 0) return;
            // Stop first, while handlers may still use the endpoint: from another
            // thread this returns after SHUTDOWN, so no handler holds the handle
            // any more and the release below frees the endpoint right here. From
            // a handler it only begins the stop; the release then defers the
            // free to the thread pool (EndpointHandle.ReleaseHandle).
            try
            {
                hpsock_csharp.hps_stop(_handle);
            }
            catch (ObjectDisposedException)
            {
            }
            _disposed = true;
            _handle.Dispose();
        }

        private void Root()
        {
            lock (_rootLock)
            {
                if (!_root.IsAllocated) _root = GCHandle.Alloc(this);
            }
        }

        private void Unroot()
        {
            lock (_rootLock)
            {
                if (_root.IsAllocated) _root.Free();
            }
        }

        private void UnrootIfIdle()
        {
            int s;
            try
            {
                s = hpsock_csharp.hps_state(_handle);
            }
            catch (ObjectDisposedException)
            {
                s = (int)EndpointState.Stopped;
            }
            if (s != (int)EndpointState.Started && s != (int)EndpointState.Stopping) Unroot();
        }

        // ------------------------------------------------------------------
        // Sending
        // ------------------------------------------------------------------

        /// <summary>Sends bytes on a connection (copied before return, or written
        /// at once). In the pack model they are one frame body.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="data">The bytes; at least one.</param>
        /// <exception cref="HpSockException">For example
        /// <see cref="HpSockError.NotFound"/> (closed, closing or stale ID) or
        /// <see cref="HpSockError.SendQueueFull"/>.</exception>
        public void Send(ulong connId, ReadOnlySpan<byte> data)
        {
            int r = SendCore(connId, data);
            if (r != 0) throw new HpSockException(r, "send");
        }

        /// <summary>Sends <paramref name="count"/> bytes of
        /// <paramref name="buffer"/> from <paramref name="offset"/>.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="buffer">The buffer.</param>
        /// <param name="offset">Where the bytes start.</param>
        /// <param name="count">How many bytes.</param>
        public void Send(ulong connId, byte[] buffer, int offset, int count)
        {
            ArgumentNullException.ThrowIfNull(buffer);
            Send(connId, new ReadOnlySpan<byte>(buffer, offset, count));
        }

        /// <summary>As <see cref="Send(ulong, ReadOnlySpan{byte})"/>, but returns
        /// the error instead of throwing it.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="data">The bytes.</param>
        /// <returns><see cref="HpSockError.None"/> or the error.</returns>
        public HpSockError TrySend(ulong connId, ReadOnlySpan<byte> data) => (HpSockError)SendCore(connId, data);

        private protected int SendCore(ulong connId, ReadOnlySpan<byte> data)
        {
            if (_disposed) ThrowDisposed();
            // An empty span pins to NULL, which hpsock refuses as such; give it
            // a real pointer so the model decides (pack: HPS_EPACKEMPTY, else
            // HPS_EINVAL), as in C.
            byte none;
            if (t_dispatching == this)
            {
                fixed (byte* p = data)
                    return Native.hps_send(_raw, connId, p != null ? p : &none, (nuint)data.Length);
            }
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                fixed (byte* p = data)
                    return Native.hps_send(_raw, connId, p != null ? p : &none, (nuint)data.Length);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
        }

        /// <summary>Sends several buffers as one send: their bytes go out
        /// contiguously, never interleaved with other sends on the connection
        /// (in the pack model they form one frame body). Empty buffers are
        /// skipped; the total must not be empty.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="buffers">The buffers.</param>
        public void SendV(ulong connId, params ReadOnlySpan<ReadOnlyMemory<byte>> buffers)
        {
            int r = SendVCore(connId, buffers);
            if (r != 0) throw new HpSockException(r, "sendv");
        }

        private protected int SendVCore(ulong connId, ReadOnlySpan<ReadOnlyMemory<byte>> buffers)
        {
            if (buffers.IsEmpty) return (int)HpSockError.InvalidArgument;
            int n = buffers.Length;
            Span<NativeBuf> bufs = n <= 32 ? stackalloc NativeBuf[n] : new NativeBuf[n];
            var pins = new System.Buffers.MemoryHandle[n];
            bool added = false;
            try
            {
                for (int i = 0; i < n; i++)
                {
                    pins[i] = buffers[i].Pin();
                    bufs[i].Base = pins[i].Pointer;
                    bufs[i].Len = (nuint)buffers[i].Length;
                }
                H.DangerousAddRef(ref added);
                fixed (NativeBuf* pb = bufs)
                {
                    return Native.hps_sendv(_handle.DangerousGetHandle(), connId, pb, n);
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
                foreach (var pin in pins) pin.Dispose();
            }
        }

        /// <summary>Sends part of a file, read in bounded chunks (push and pull
        /// models only).</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="path">The file.</param>
        /// <param name="offset">Where to start.</param>
        /// <param name="length">How many bytes; negative: to the end of the file.</param>
        public void SendFile(ulong connId, string path, long offset = 0, long length = -1)
        {
            ArgumentNullException.ThrowIfNull(path);
            Check(hpsock_csharp.hps_send_file(H, connId, path, offset, length), "send file");
        }

        // ------------------------------------------------------------------
        // Connections
        // ------------------------------------------------------------------

        /// <summary>Closes a connection. Not forced: queued bytes are sent first,
        /// then the connection is shut down. Forced: closed at once, unsent
        /// bytes dropped. Its close event has operation
        /// <see cref="SocketOperation.Close"/>.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="force">Drop unsent bytes.</param>
        /// <returns>False if the connection was not found (closed, already
        /// closing, or a stale ID).</returns>
        public bool Disconnect(ulong connId, bool force = false)
        {
            int r = hpsock_csharp.hps_disconnect(H, connId, force ? 1 : 0);
            if (r == (int)HpSockError.NotFound) return false;
            Check(r, "disconnect");
            return true;
        }

        /// <summary>Stops (or resumes) reading from a connection; while paused
        /// no receive event arrives for it and TCP flow-controls the peer.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="pause">True to pause, false to resume.</param>
        public void PauseReceive(ulong connId, bool pause = true) =>
            Check(hpsock_csharp.hps_pause_receive(H, connId, pause ? 1 : 0), "pause receive");

        /// <summary>Resumes reading from a paused connection.</summary>
        /// <param name="connId">The connection.</param>
        public void ResumeReceive(ulong connId) => PauseReceive(connId, false);

        /// <summary>Pull model: takes exactly <c>buffer.Length</c> waiting bytes.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="buffer">Receives the bytes.</param>
        /// <returns>False if fewer bytes wait (nothing is taken).</returns>
        public bool TryFetch(ulong connId, Span<byte> buffer) => FetchCore(connId, buffer, take: true);

        /// <summary>Pull model: copies exactly <c>buffer.Length</c> waiting bytes,
        /// which stay waiting.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="buffer">Receives the bytes.</param>
        /// <returns>False if fewer bytes wait.</returns>
        public bool TryPeek(ulong connId, Span<byte> buffer) => FetchCore(connId, buffer, take: false);

        private bool FetchCore(ulong connId, Span<byte> buffer, bool take)
        {
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                fixed (byte* p = buffer)
                {
                    IntPtr ep = _handle.DangerousGetHandle();
                    r = take ? Native.hps_fetch(ep, connId, p, (nuint)buffer.Length)
                             : Native.hps_peek(ep, connId, p, (nuint)buffer.Length);
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            if (r == (int)HpSockError.Again) return false;
            Check(r, take ? "fetch" : "peek");
            return true;
        }

        /// <summary>Number of open connections.</summary>
        public int ConnectionCount => Check(hpsock_csharp.hps_conn_count(H), "connection count");

        /// <summary>The IDs of the open connections.</summary>
        public ulong[] GetConnectionIds()
        {
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                IntPtr ep = _handle.DangerousGetHandle();
                while (true)
                {
                    nuint count;
                    Check(Native.hps_conn_list(ep, null, 0, &count), "connection list");
                    var ids = new ulong[(int)count + 16];
                    int got;
                    fixed (ulong* p = ids)
                    {
                        got = Check(Native.hps_conn_list(ep, p, (nuint)ids.Length, &count), "connection list");
                    }
                    if ((int)count <= ids.Length) return ids.AsSpan(0, got).ToArray();
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
        }

        /// <summary>The local address of a connection.</summary>
        /// <param name="connId">The connection.</param>
        public IPEndPoint GetLocalAddress(ulong connId) => Address(connId, remote: false);

        /// <summary>The remote address of a connection.</summary>
        /// <param name="connId">The connection.</param>
        public IPEndPoint GetRemoteAddress(ulong connId) => Address(connId, remote: true);

        private IPEndPoint Address(ulong connId, bool remote)
        {
            byte* host = stackalloc byte[Native.HostBufferSize];
            ushort port;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                IntPtr ep = _handle.DangerousGetHandle();
                r = remote ? Native.hps_remote_address(ep, connId, host, Native.HostBufferSize, &port)
                           : Native.hps_local_address(ep, connId, host, Native.HostBufferSize, &port);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, remote ? "remote address" : "local address");
            return ToEndPoint(host, port);
        }

        private protected IPEndPoint ListenAddressCore()
        {
            byte* host = stackalloc byte[Native.HostBufferSize];
            ushort port;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                r = Native.hps_listen_address(_handle.DangerousGetHandle(), host, Native.HostBufferSize, &port);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, "listen address");
            return ToEndPoint(host, port);
        }

        private static IPEndPoint ToEndPoint(byte* host, ushort port) =>
            new IPEndPoint(IPAddress.Parse(Marshal.PtrToStringUTF8((IntPtr)host) ?? ""), port);

        /// <summary>Attaches a pointer-sized value to a connection (0 initially).
        /// hpsock never interprets it.</summary>
        /// <param name="connId">The connection.</param>
        /// <param name="extra">The value.</param>
        public void SetExtra(ulong connId, nint extra) =>
            Check(hpsock_csharp.hps_set_extra(H, connId, (nuint)extra), "set extra");

        /// <summary>The value attached with <see cref="SetExtra"/>.</summary>
        /// <param name="connId">The connection.</param>
        public nint GetExtra(ulong connId)
        {
            nuint extra;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                r = Native.hps_get_extra(_handle.DangerousGetHandle(), connId, &extra);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, "get extra");
            return (nint)extra;
        }

        /// <summary>Counters of one connection; for a server or agent, 0 gives the
        /// endpoint's totals since its last start.</summary>
        /// <param name="connId">The connection, or 0.</param>
        public ConnectionStats GetStats(ulong connId = 0)
        {
            NativeStats s;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                r = Native.hps_get_stats(_handle.DangerousGetHandle(), connId, &s);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, "stats");
            return new ConnectionStats(in s);
        }

        /// <summary>The bytes a connection has accepted for sending (pack headers
        /// included, and file bytes not yet read) that are not yet handed to the
        /// kernel. Compare with <see cref="SendHighWater"/> and
        /// <see cref="SendLowWater"/>, or wait for <see cref="IListener.OnLowWater"/>.</summary>
        /// <param name="connId">The connection (0 = a client's own).</param>
        /// <exception cref="HpSockException"><see cref="HpSockError.NotFound"/>.</exception>
        public long GetUnsent(ulong connId)
        {
            ulong unsent;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                r = Native.hps_get_unsent(_handle.DangerousGetHandle(), connId, &unsent);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, "get unsent");
            return (long)unsent;
        }

        /// <summary>An endpoint-wide counter of what overload and hostile peers
        /// cost, since the endpoint was made (restarts keep it).</summary>
        /// <param name="counter">Which counter.</param>
        public ulong GetCounter(EndpointCounter counter)
        {
            ulong value;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                r = Native.hps_get_counter(_handle.DangerousGetHandle(), (int)counter, &value);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, $"get counter {counter}");
            return value;
        }

        /// <summary>Disconnects (forced) every connection that has received
        /// nothing for at least <paramref name="silence"/>; their close events
        /// carry <see cref="HpSockError.Silence"/>.</summary>
        /// <param name="silence">Minimum silence (at least 1 ms).</param>
        /// <returns>The number of connections selected.</returns>
        public int DisconnectSilent(TimeSpan silence) =>
            Check(hpsock_csharp.hps_disconnect_silent(H, (long)silence.TotalMilliseconds), "disconnect silent");

        /// <summary>Disconnects (forced) every connection open for at least
        /// <paramref name="age"/>.</summary>
        /// <param name="age">Minimum age (at least 1 ms).</param>
        /// <returns>The number of connections selected.</returns>
        public int DisconnectLong(TimeSpan age) =>
            Check(hpsock_csharp.hps_disconnect_long(H, (long)age.TotalMilliseconds), "disconnect long");

        // ------------------------------------------------------------------
        // Options
        // ------------------------------------------------------------------

        /// <summary>Sets an option. Unless live, only while not running.</summary>
        /// <param name="option">The key.</param>
        /// <param name="value">The value.</param>
        /// <exception cref="HpSockException"><see cref="HpSockError.InvalidArgument"/>
        /// (out of range) or <see cref="HpSockError.InvalidState"/> (running).</exception>
        public void SetOption(EndpointOption option, long value) =>
            Check(hpsock_csharp.hps_setopt(H, (int)option, value), $"set option {option}");

        /// <summary>Reads an option.</summary>
        /// <param name="option">The key.</param>
        public long GetOption(EndpointOption option)
        {
            long value;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                r = Native.hps_getopt(_handle.DangerousGetHandle(), (int)option, &value);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, $"get option {option}");
            return value;
        }

        /// <summary>Sets a string option (TLS certificates, CAs, ciphers, server name).</summary>
        /// <param name="option">The key.</param>
        /// <param name="value">The value; null or "" clears it.</param>
        /// <exception cref="HpSockException"><see cref="HpSockError.InvalidState"/> (running).</exception>
        public void SetOption(StringOption option, string? value) =>
            Check(hpsock_csharp.hps_setopt_str(H, (int)option, value), $"set option {option}");

        /// <summary>Reads a string option ("" when unset).</summary>
        /// <param name="option">The key.</param>
        public string GetOption(StringOption option) =>
            Str(hpsock_csharp.hpsw_getopt_str(H, (int)option), $"get option {option}");

        /// <summary>A TLS fact of a connection; readable from OnAccept/OnConnect
        /// until OnClose returns.</summary>
        /// <param name="connId">The connection (0 = a client's own).</param>
        /// <param name="kind">What to read.</param>
        /// <exception cref="HpSockException"><see cref="HpSockError.NotFound"/>,
        /// <see cref="HpSockError.NoTls"/>.</exception>
        public string GetTlsInfo(ulong connId, TlsInfoKind kind) =>
            Str(hpsock_csharp.hpsw_tls_info(H, connId, (int)kind), "TLS info");

        /// <summary>Why a TLS connection failed: call it from OnClose, where the
        /// error is one of the Tls* codes. "" if it did not fail.</summary>
        /// <param name="connId">The connection.</param>
        public string GetTlsError(ulong connId) => GetTlsInfo(connId, TlsInfoKind.Error);

        /// <summary>Why the last Start failed with <see cref="HpSockError.TlsConfig"/>.</summary>
        public string TlsConfigError => GetTlsInfo(0, TlsInfoKind.ConfigError);

        private protected void AddTlsCertificateCore(string name, string certificate, string key) =>
            Check(hpsock_csharp.hps_tls_add_cert(H, name, certificate, key), "add TLS certificate");

        private static string Str(string? s, string operation)
        {
            if (s == null) Check(hpsock_csharp.hpsw_error(), operation);
            return s ?? "";
        }

        /// <summary>Every connection speaks TLS; default false. A server needs
        /// <see cref="TlsCertificateFile"/> and <see cref="TlsKeyFile"/> (or the PEM options).</summary>
        public bool Tls
        {
            get => GetOption(EndpointOption.Tls) != 0;
            set => SetOption(EndpointOption.Tls, value ? 1 : 0);
        }

        /// <summary>How the peer is verified.</summary>
        public TlsVerify TlsVerify
        {
            get => (TlsVerify)GetOption(EndpointOption.TlsVerify);
            set => SetOption(EndpointOption.TlsVerify, (long)value);
        }

        /// <summary>Lowest TLS version accepted; default 1.2.</summary>
        public TlsVersion TlsMinVersion
        {
            get => (TlsVersion)GetOption(EndpointOption.TlsMinVersion);
            set => SetOption(EndpointOption.TlsMinVersion, (long)value);
        }

        /// <summary>Certificate (chain) PEM file.</summary>
        public string TlsCertificateFile
        {
            get => GetOption(StringOption.TlsCertificateFile);
            set => SetOption(StringOption.TlsCertificateFile, value);
        }

        /// <summary>Private key PEM file.</summary>
        public string TlsKeyFile
        {
            get => GetOption(StringOption.TlsKeyFile);
            set => SetOption(StringOption.TlsKeyFile, value);
        }

        /// <summary>Trusted CAs, PEM file.</summary>
        public string TlsCaFile
        {
            get => GetOption(StringOption.TlsCaFile);
            set => SetOption(StringOption.TlsCaFile, value);
        }

        /// <summary>Sets the passphrase of an encrypted private key
        /// (<see cref="StringOption.TlsKeyPassword"/>). Write-only: it cannot be
        /// read back, and the library wipes its copy when freed. Without it an
        /// encrypted key fails Start with <see cref="HpSockError.TlsConfig"/>,
        /// never a prompt.</summary>
        /// <param name="password">The passphrase; null or "" clears it.</param>
        public void SetTlsKeyPassword(string? password) => SetOption(StringOption.TlsKeyPassword, password);

        /// <summary>Agent/client: the server name sent and verified.</summary>
        public string TlsServerName
        {
            get => GetOption(StringOption.TlsServerName);
            set => SetOption(StringOption.TlsServerName, value);
        }

        /// <summary>Loop threads, 1..64; default: the number of cores.</summary>
        public int Workers
        {
            get => (int)GetOption(EndpointOption.Workers);
            set => SetOption(EndpointOption.Workers, value);
        }

        /// <summary>The receive model; default <see cref="HpSock.ReceiveModel.Push"/>.</summary>
        public ReceiveModel ReceiveModel
        {
            get => (ReceiveModel)GetOption(EndpointOption.ReceiveModel);
            set => SetOption(EndpointOption.ReceiveModel, (long)value);
        }

        /// <summary>(live) The events delivered. Set at construction to the events
        /// the listener implements; Close and Shutdown are always delivered.</summary>
        public EventKinds Events
        {
            get => (EventKinds)GetOption(EndpointOption.Events);
            set => SetOption(EndpointOption.Events, (long)(value & EventKinds.All));
        }

        /// <summary>SO_SNDBUF bytes; 0 = system default.</summary>
        public int SendBufferSize
        {
            get => (int)GetOption(EndpointOption.SendBufferSize);
            set => SetOption(EndpointOption.SendBufferSize, value);
        }

        /// <summary>SO_RCVBUF bytes; 0 = system default.</summary>
        public int ReceiveBufferSize
        {
            get => (int)GetOption(EndpointOption.ReceiveBufferSize);
            set => SetOption(EndpointOption.ReceiveBufferSize, value);
        }

        /// <summary>Maximum open connections; default: what the descriptor limit holds (TCP roles), 100000 (UDP roles).</summary>
        public int MaxConnections
        {
            get => (int)GetOption(EndpointOption.MaxConnections);
            set => SetOption(EndpointOption.MaxConnections, value);
        }

        /// <summary>Idle time before TCP keep-alive probes; zero = off (default).</summary>
        public TimeSpan KeepAliveTime
        {
            get => TimeSpan.FromMilliseconds(GetOption(EndpointOption.KeepAliveTime));
            set => SetOption(EndpointOption.KeepAliveTime, (long)value.TotalMilliseconds);
        }

        /// <summary>Time between keep-alive probes; default 20 s.</summary>
        public TimeSpan KeepAliveInterval
        {
            get => TimeSpan.FromMilliseconds(GetOption(EndpointOption.KeepAliveInterval));
            set => SetOption(EndpointOption.KeepAliveInterval, (long)value.TotalMilliseconds);
        }

        /// <summary>TCP_NODELAY; default true.</summary>
        public bool NoDelay
        {
            get => GetOption(EndpointOption.NoDelay) != 0;
            set => SetOption(EndpointOption.NoDelay, value ? 1 : 0);
        }

        /// <summary>SO_REUSEADDR; default true.</summary>
        public bool ReuseAddress
        {
            get => GetOption(EndpointOption.ReuseAddress) != 0;
            set => SetOption(EndpointOption.ReuseAddress, value ? 1 : 0);
        }

        /// <summary>An IPv6 socket accepts only IPv6 (else dual stack, the default).</summary>
        public bool IPv6Only
        {
            get => GetOption(EndpointOption.IPv6Only) != 0;
            set => SetOption(EndpointOption.IPv6Only, value ? 1 : 0);
        }

        /// <summary>Unsent bytes per connection before a send fails with
        /// <see cref="HpSockError.SendQueueFull"/>; default 16 MiB.</summary>
        public long MaxSendQueue
        {
            get => GetOption(EndpointOption.MaxSendQueue);
            set => SetOption(EndpointOption.MaxSendQueue, value);
        }

        /// <summary>Free connection objects cached per loop; default 1024.</summary>
        public int FreePool
        {
            get => (int)GetOption(EndpointOption.FreePool);
            set => SetOption(EndpointOption.FreePool, value);
        }

        /// <summary>Connect timeout; default 10 s.</summary>
        public TimeSpan ConnectTimeout
        {
            get => TimeSpan.FromMilliseconds(GetOption(EndpointOption.ConnectTimeout));
            set => SetOption(EndpointOption.ConnectTimeout, (long)value.TotalMilliseconds);
        }

        /// <summary>Listen backlog; default 1024.</summary>
        public int Backlog
        {
            get => (int)GetOption(EndpointOption.Backlog);
            set => SetOption(EndpointOption.Backlog, value);
        }

        /// <summary>Pack model: the header flag, 0..1023; 0 = incoming flags not checked.</summary>
        public int PackFlag
        {
            get => (int)GetOption(EndpointOption.PackFlag);
            set => SetOption(EndpointOption.PackFlag, value);
        }

        /// <summary>Pack model: the max body size, 1..4194303; default 262144.</summary>
        public int PackMaxSize
        {
            get => (int)GetOption(EndpointOption.PackMaxSize);
            set => SetOption(EndpointOption.PackMaxSize, value);
        }

        /// <summary>Pull model: max unread bytes per connection; default 4 MiB.</summary>
        public long PullMaxSize
        {
            get => GetOption(EndpointOption.PullMaxSize);
            set => SetOption(EndpointOption.PullMaxSize, value);
        }

        /// <summary>A connection receiving nothing this long is closed with
        /// <see cref="HpSockError.Silence"/>; zero = off (default).</summary>
        public TimeSpan SilenceTimeout
        {
            get => TimeSpan.FromMilliseconds(GetOption(EndpointOption.SilenceTimeout));
            set => SetOption(EndpointOption.SilenceTimeout, (long)value.TotalMilliseconds);
        }

        /// <summary>(live) Unsent bytes per connection above which
        /// <see cref="IListener.OnHighWater"/> comes (and, with <see cref="AutoPause"/>,
        /// reading pauses); 1..1 GiB, default 1 MiB.</summary>
        public long SendHighWater
        {
            get => GetOption(EndpointOption.SendHighWater);
            set => SetOption(EndpointOption.SendHighWater, value);
        }

        /// <summary>(live) Unsent bytes at or below which <see cref="IListener.OnLowWater"/>
        /// comes after a high water (and an automatic pause resumes); kept below
        /// <see cref="SendHighWater"/>; default 256 KiB.</summary>
        public long SendLowWater
        {
            get => GetOption(EndpointOption.SendLowWater);
            set => SetOption(EndpointOption.SendLowWater, value);
        }

        /// <summary>(live) Sets both water marks in the order that keeps the low one
        /// below the high one at every step, so any valid pair can follow any other.</summary>
        /// <param name="high">The high water mark.</param>
        /// <param name="low">The low water mark, below <paramref name="high"/>.</param>
        public void SetSendWaterMarks(long high, long low)
        {
            if (low >= high) throw new ArgumentOutOfRangeException(nameof(low), low, $"not below the high water mark {high}");
            if (low < SendHighWater)
            {
                SendLowWater = low;
                SendHighWater = high;
            }
            else
            {
                SendHighWater = high;
                SendLowWater = low;
            }
        }

        /// <summary>The engine pauses reading on a connection while its unsent bytes
        /// are above <see cref="SendHighWater"/> and resumes at <see cref="SendLowWater"/>,
        /// so a peer that does not read cannot make an echo or request/response
        /// server queue without bound; default false.</summary>
        public bool AutoPause
        {
            get => GetOption(EndpointOption.AutoPause) != 0;
            set => SetOption(EndpointOption.AutoPause, value ? 1 : 0);
        }

        /// <summary>How long a graceful close (a disconnect without force, a close
        /// after a protocol error, a peer's half-close) may take to flush unsent
        /// bytes; past it the connection is closed by force with
        /// <see cref="HpSockError.CloseTimeout"/>; default 30 s.</summary>
        public TimeSpan CloseTimeout
        {
            get => TimeSpan.FromMilliseconds(GetOption(EndpointOption.CloseTimeout));
            set => SetOption(EndpointOption.CloseTimeout, (long)value.TotalMilliseconds);
        }

        // ------------------------------------------------------------------
        // Dispatch (called by the bridge on loop threads)
        // ------------------------------------------------------------------

        int IEventTarget.OnNativeEvent(in NativeEvent ev)
        {
            TcpEndpoint? outer = t_dispatching;
            t_dispatching = this;
            try
            {
                return Dispatch(in ev);
            }
            finally
            {
                t_dispatching = outer;
            }
        }

        private int Dispatch(in NativeEvent ev)
        {
            if (ev.Addr != IntPtr.Zero && (Role == EndpointRole.UdpCast || Role == EndpointRole.UdpNode) &&
                (ev.Type == (int)hps_event_type.HPS_EV_RECEIVE || ev.Type == (int)hps_event_type.HPS_EV_SEND))
            {
                var address = new IPEndPoint(IPAddress.Parse(Marshal.PtrToStringUTF8(ev.Addr)!), ev.Port);
                if (ev.Error != 0)
                    return (int)_listener.OnDatagramError(this, ev.Conn, (SocketOperation)ev.Op, (HpSockError)ev.Error, address);
                var bytes = new ReadOnlySpan<byte>((void*)ev.Data, checked((int)ev.Len));
                return ev.Type == (int)hps_event_type.HPS_EV_RECEIVE
                    ? (int)_listener.OnReceiveFrom(this, ev.Conn, bytes, address)
                    : (int)_listener.OnSendTo(this, ev.Conn, bytes, address);
            }
            switch ((hps_event_type)ev.Type)
            {
                case hps_event_type.HPS_EV_RECEIVE:
                    if (_model == ReceiveModel.Pull)
                        return (int)_listener.OnReceive(this, ev.Conn, (long)ev.Len);
                    return (int)_listener.OnReceive(this, ev.Conn, new ReadOnlySpan<byte>((void*)ev.Data, checked((int)ev.Len)));
                case hps_event_type.HPS_EV_SEND:
                    return (int)_listener.OnSend(this, ev.Conn, new ReadOnlySpan<byte>((void*)ev.Data, checked((int)ev.Len)));
                case hps_event_type.HPS_EV_ACCEPT:
                    return (int)_listener.OnAccept(this, ev.Conn);
                case hps_event_type.HPS_EV_CONNECT:
                    return (int)_listener.OnConnect(this, ev.Conn);
                case hps_event_type.HPS_EV_HANDSHAKE:
                    return (int)_listener.OnHandShake(this, ev.Conn);
                case hps_event_type.HPS_EV_PREPARE:
                    return (int)_listener.OnPrepare(this, ev.Conn, (nint)ev.Fd);
                case hps_event_type.HPS_EV_CLOSE:
                    _listener.OnClose(this, ev.Conn, (SocketOperation)ev.Op, (HpSockError)ev.Error);
                    return (int)HandleResult.Ok;
                case hps_event_type.HPS_EV_HIGH_WATER:
                    _listener.OnHighWater(this, ev.Conn, (long)ev.Len);
                    return (int)HandleResult.Ok;
                case hps_event_type.HPS_EV_LOW_WATER:
                    _listener.OnLowWater(this, ev.Conn, (long)ev.Len);
                    return (int)HandleResult.Ok;
                case hps_event_type.HPS_EV_SHUTDOWN:
                    try
                    {
                        _listener.OnShutdown(this);
                    }
                    finally
                    {
                        Unroot(); // no event follows: the endpoint may be collected
                    }
                    return (int)HandleResult.Ok;
                default:
                    return (int)HandleResult.Ok;
            }
        }

        void IEventTarget.OnHandlerException(Exception exception, in NativeEvent ev)
        {
            EventKinds kind = ev.Type is > 0 and < 32 ? (EventKinds)(1u << ev.Type) : EventKinds.None;
            EventHandler<HandlerExceptionEventArgs>? handler = HandlerException;
            if (handler is null)
            {
                Console.Error.WriteLine(
                    $"hpsock: {GetType().Name} handler for {kind} (connection {ev.Conn}) threw; treated as Error: {exception}");
                return;
            }
            handler(this, new HandlerExceptionEventArgs(exception, kind, ev.Conn));
        }

        /// <summary>The events a listener type implements, so only those are
        /// enabled (close and shutdown are always delivered).</summary>
        internal static EventKinds ListenerEvents(Type type) => s_listenerEvents.GetOrAdd(type, static t =>
        {
            InterfaceMapping map = t.GetInterfaceMap(typeof(IListener));
            EventKinds kinds = EventKinds.None;
            for (int i = 0; i < map.InterfaceMethods.Length; i++)
            {
                if (map.TargetMethods[i].DeclaringType == typeof(IListener)) continue; // the default
                kinds |= map.InterfaceMethods[i].Name switch
                {
                    nameof(IListener.OnPrepare) => EventKinds.Prepare,
                    nameof(IListener.OnAccept) => EventKinds.Accept,
                    nameof(IListener.OnConnect) => EventKinds.Connect,
                    nameof(IListener.OnHandShake) => EventKinds.HandShake,
                    nameof(IListener.OnReceive) => EventKinds.Receive,
                    nameof(IListener.OnSend) => EventKinds.Send,
                    nameof(IListener.OnReceiveFrom) => EventKinds.Receive,
                    nameof(IListener.OnSendTo) => EventKinds.Send,
                    nameof(IListener.OnDatagramError) => EventKinds.Receive | EventKinds.Send,
                    nameof(IListener.OnHighWater) => EventKinds.HighWater,
                    nameof(IListener.OnLowWater) => EventKinds.LowWater,
                    _ => EventKinds.None,
                };
            }
            return kinds;
        });

        // ------------------------------------------------------------------

        private protected static int Check(int code, string operation) => HpSockException.Check(code, operation);

        private protected static byte[] HostBytes(string host)
        {
            ArgumentNullException.ThrowIfNull(host);
            int n = Encoding.UTF8.GetByteCount(host);
            var bytes = new byte[n + 1];
            Encoding.UTF8.GetBytes(host, 0, host.Length, bytes, 0);
            return bytes;
        }

        /// <summary>UDP cast/node: one datagram to host:port.</summary>
        private protected void SendToCore(string host, int port, ReadOnlySpan<byte> data)
        {
            if ((uint)port > ushort.MaxValue) throw new ArgumentOutOfRangeException(nameof(port), port, "0..65535");
            byte[] h = HostBytes(host);
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                fixed (byte* ph = h)
                fixed (byte* pd = data)
                {
                    // a non-null pointer for an empty span, so len 0 is refused as such
                    byte one = 0;
                    r = Native.hps_send_to(_handle.DangerousGetHandle(), ph, (ushort)port,
                        pd != null ? pd : &one, (nuint)data.Length);
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, "send_to");
        }

        /// <summary>UDP cast/node: join (or leave) a multicast group.</summary>
        private protected void MembershipCore(string group, string? iface, bool join)
        {
            byte[] g = HostBytes(group);
            byte[]? i = iface is null ? null : HostBytes(iface);
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                fixed (byte* pg = g)
                fixed (byte* pi = i)
                {
                    r = join ? Native.hps_join_group(_handle.DangerousGetHandle(), pg, pi)
                             : Native.hps_leave_group(_handle.DangerousGetHandle(), pg, pi);
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, join ? "join_group" : "leave_group");
        }

        /// <summary>UDP cast/node, before start: the multicast interface.</summary>
        private protected void CastInterfaceCore(string? iface)
        {
            byte[]? i = iface is null ? null : HostBytes(iface);
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                fixed (byte* pi = i)
                {
                    r = Native.hps_cast_interface(_handle.DangerousGetHandle(), pi);
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            Check(r, "cast_interface");
        }

        private protected int ConnectCore(string host, int port, out ulong connId)
        {
            if ((uint)port > ushort.MaxValue) throw new ArgumentOutOfRangeException(nameof(port), port, "0..65535");
            byte[] h = HostBytes(host);
            ulong id = 0;
            int r;
            bool added = false;
            try
            {
                H.DangerousAddRef(ref added);
                fixed (byte* ph = h)
                {
                    r = Native.hps_connect(_handle.DangerousGetHandle(), ph, (ushort)port, &id);
                }
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            connId = id;
            return r;
        }
    }
}
