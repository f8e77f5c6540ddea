// Enums.cs - the public enums. Every value comes from hpsock.h through the
// SWIG-generated internal enums, so the header stays the one source.
using System;

namespace HpSock
{
    /// <summary>What an event handler returns.</summary>
    public enum HandleResult
    {
        /// <summary>Go on.</summary>
        Ok = (int)hps_result.HPS_HR_OK,

        /// <summary>Go on; the event needs nothing more from hpsock.</summary>
        Ignore = (int)hps_result.HPS_HR_IGNORE,

        /// <summary>PREPARE: abort the listen or connect. ACCEPT: refuse the
        /// connection (no close event follows). CONNECT, HANDSHAKE, RECEIVE,
        /// SEND: close the connection with <see cref="HpSockError.Handler"/>.
        /// Ignored for CLOSE and SHUTDOWN.</summary>
        Error = (int)hps_result.HPS_HR_ERROR,
    }

    /// <summary>The role of an endpoint.</summary>
    public enum EndpointRole
    {
        /// <summary>Listens and accepts many connections.</summary>
        Server = (int)hps_role_kind.HPS_TCP_SERVER,

        /// <summary>Makes many outbound connections.</summary>
        Agent = (int)hps_role_kind.HPS_TCP_AGENT,

        /// <summary>Owns one outbound connection.</summary>
        Client = (int)hps_role_kind.HPS_TCP_CLIENT,

        /// <summary>UDP: one port, a connection per peer address.</summary>
        UdpServer = (int)hps_role_kind.HPS_UDP_SERVER,

        /// <summary>UDP: one connected peer.</summary>
        UdpClient = (int)hps_role_kind.HPS_UDP_CLIENT,

        /// <summary>UDP: a multicast group or broadcast address.</summary>
        UdpCast = (int)hps_role_kind.HPS_UDP_CAST,

        /// <summary>UDP: connectionless, sends to any address.</summary>
        UdpNode = (int)hps_role_kind.HPS_UDP_NODE,
    }

    /// <summary>How received bytes are delivered.</summary>
    public enum ReceiveModel
    {
        /// <summary>Every read is delivered in
        /// <see cref="IListener.OnReceive(TcpEndpoint, ulong, ReadOnlySpan{byte})"/>.</summary>
        Push = (int)hps_model.HPS_MODEL_PUSH,

        /// <summary>The receive event says how many bytes wait
        /// (<see cref="IListener.OnReceive(TcpEndpoint, ulong, long)"/>); the
        /// application fetches or peeks exactly what it wants.</summary>
        Pull = (int)hps_model.HPS_MODEL_PULL,

        /// <summary>Each receive event carries one whole length-prefixed frame
        /// (HP-Socket's pack model); sends are framed likewise.</summary>
        Pack = (int)hps_model.HPS_MODEL_PACK,
    }

    /// <summary>The state of an endpoint.</summary>
    public enum EndpointState
    {
        /// <summary>Created, never started.</summary>
        Created = (int)hps_state_kind.HPS_STATE_CREATED,

        /// <summary>Running.</summary>
        Started = (int)hps_state_kind.HPS_STATE_STARTED,

        /// <summary>Stopping: connections are being closed.</summary>
        Stopping = (int)hps_state_kind.HPS_STATE_STOPPING,

        /// <summary>Stopped (SHUTDOWN delivered); may be started again.</summary>
        Stopped = (int)hps_state_kind.HPS_STATE_STOPPED,
    }

    /// <summary>The operation during which a connection closed.</summary>
    public enum SocketOperation
    {
        /// <summary>Unknown.</summary>
        Unknown = (int)hps_op.HPS_OP_UNKNOWN,

        /// <summary>While accepting.</summary>
        Accept = (int)hps_op.HPS_OP_ACCEPT,

        /// <summary>While connecting.</summary>
        Connect = (int)hps_op.HPS_OP_CONNECT,

        /// <summary>While sending.</summary>
        Send = (int)hps_op.HPS_OP_SEND,

        /// <summary>While receiving; includes a normal close by the peer
        /// (error <see cref="HpSockError.None"/>).</summary>
        Receive = (int)hps_op.HPS_OP_RECEIVE,

        /// <summary>Closed locally: disconnect or stop.</summary>
        Close = (int)hps_op.HPS_OP_CLOSE,
    }

    /// <summary>The events an endpoint delivers (option
    /// <see cref="EndpointOption.Events"/>). Close and Shutdown are always
    /// delivered.</summary>
    [Flags]
    public enum EventKinds : uint
    {
        /// <summary>Only Close and Shutdown.</summary>
        None = 0,

        /// <summary>Socket made, before listen or connect.</summary>
        Prepare = 1u << (int)hps_event_type.HPS_EV_PREPARE,

        /// <summary>A server accepted a connection.</summary>
        Accept = 1u << (int)hps_event_type.HPS_EV_ACCEPT,

        /// <summary>An agent or client connection was established.</summary>
        Connect = 1u << (int)hps_event_type.HPS_EV_CONNECT,

        /// <summary>A connection is ready for traffic.</summary>
        HandShake = 1u << (int)hps_event_type.HPS_EV_HANDSHAKE,

        /// <summary>Data arrived.</summary>
        Receive = 1u << (int)hps_event_type.HPS_EV_RECEIVE,

        /// <summary>Bytes were handed to the kernel.</summary>
        Send = 1u << (int)hps_event_type.HPS_EV_SEND,

        /// <summary>A connection closed (always delivered).</summary>
        Close = 1u << (int)hps_event_type.HPS_EV_CLOSE,

        /// <summary>The endpoint stopped (always delivered).</summary>
        Shutdown = 1u << (int)hps_event_type.HPS_EV_SHUTDOWN,

        /// <summary>A connection's unsent bytes rose above
        /// <see cref="EndpointOption.SendHighWater"/>.</summary>
        HighWater = 1u << (int)hps_event_type.HPS_EV_HIGH_WATER,

        /// <summary>After a high water: a connection's unsent bytes fell to
        /// <see cref="EndpointOption.SendLowWater"/> or below.</summary>
        LowWater = 1u << (int)hps_event_type.HPS_EV_LOW_WATER,

        /// <summary>Every event (HPS_EVENTS_ALL).</summary>
        All = Prepare | Accept | Connect | HandShake | Receive | Send | Close | Shutdown | HighWater | LowWater,
    }

    /// <summary>Option keys (hps_option). All values are 64-bit integers;
    /// unless live, an option can be set only while the endpoint is not
    /// running.</summary>
    public enum EndpointOption
    {
        /// <summary>Loop threads, 1..64; default: the number of cores.</summary>
        Workers = (int)hps_option.HPS_OPT_WORKERS,

        /// <summary>A <see cref="HpSock.ReceiveModel"/>; default Push.</summary>
        ReceiveModel = (int)hps_option.HPS_OPT_RECV_MODEL,

        /// <summary>SO_SNDBUF bytes, 0 = system default.</summary>
        SendBufferSize = (int)hps_option.HPS_OPT_SNDBUF,

        /// <summary>SO_RCVBUF bytes, 0 = system default.</summary>
        ReceiveBufferSize = (int)hps_option.HPS_OPT_RCVBUF,

        /// <summary>1..16M; default: what the descriptor limit holds (TCP roles), 100000 (UDP roles).</summary>
        MaxConnections = (int)hps_option.HPS_OPT_MAX_CONNECTIONS,

        /// <summary>Milliseconds idle before keep-alive probes, 0 = off.</summary>
        KeepAliveTime = (int)hps_option.HPS_OPT_KEEPALIVE_TIME,

        /// <summary>Milliseconds between keep-alive probes; default 20000.</summary>
        KeepAliveInterval = (int)hps_option.HPS_OPT_KEEPALIVE_INTERVAL,

        /// <summary>TCP_NODELAY 0/1; default 1.</summary>
        NoDelay = (int)hps_option.HPS_OPT_NODELAY,

        /// <summary>SO_REUSEADDR 0/1; default 1.</summary>
        ReuseAddress = (int)hps_option.HPS_OPT_REUSE_ADDR,

        /// <summary>1: an IPv6 socket accepts only IPv6; 0: dual stack.</summary>
        IPv6Only = (int)hps_option.HPS_OPT_IPV6_ONLY,

        /// <summary>Unsent bytes per connection before a send fails with
        /// <see cref="HpSockError.SendQueueFull"/>; default 16 MiB.</summary>
        MaxSendQueue = (int)hps_option.HPS_OPT_MAX_SEND_QUEUE,

        /// <summary>Free connection objects cached per loop; default 1024.</summary>
        FreePool = (int)hps_option.HPS_OPT_FREE_POOL,

        /// <summary>Connect timeout in milliseconds; default 10000.</summary>
        ConnectTimeout = (int)hps_option.HPS_OPT_CONNECT_TIMEOUT,

        /// <summary>(live) An <see cref="EventKinds"/> mask of events to deliver.</summary>
        Events = (int)hps_option.HPS_OPT_EVENTS,

        /// <summary>Listen backlog 1..65535; default 1024.</summary>
        Backlog = (int)hps_option.HPS_OPT_BACKLOG,

        /// <summary>Pack header flag 0..1023; 0 = incoming flags not checked.</summary>
        PackFlag = (int)hps_option.HPS_OPT_PACK_FLAG,

        /// <summary>Max pack body 1..4194303; default 262144.</summary>
        PackMaxSize = (int)hps_option.HPS_OPT_PACK_MAX,

        /// <summary>Max unread bytes per connection in the pull model; default 4 MiB.</summary>
        PullMaxSize = (int)hps_option.HPS_OPT_PULL_MAX,

        /// <summary>Milliseconds without receiving before a connection is closed
        /// with <see cref="HpSockError.Silence"/>; 0 = off.</summary>
        SilenceTimeout = (int)hps_option.HPS_OPT_SILENCE_TIMEOUT,

        /// <summary>(live) Unsent bytes per connection above which
        /// <see cref="IListener.OnHighWater"/> comes (and, with <see cref="AutoPause"/>,
        /// reading pauses); 1..1 GiB, default 1 MiB.</summary>
        SendHighWater = (int)hps_option.HPS_OPT_SEND_HIGH_WATER,

        /// <summary>(live) Unsent bytes at or below which <see cref="IListener.OnLowWater"/>
        /// comes after a high water (and an automatic pause resumes); 0..1 GiB, kept
        /// below <see cref="SendHighWater"/>, default 256 KiB.</summary>
        SendLowWater = (int)hps_option.HPS_OPT_SEND_LOW_WATER,

        /// <summary>0/1: the engine pauses reading on a connection while its unsent
        /// bytes are above <see cref="SendHighWater"/> and resumes at
        /// <see cref="SendLowWater"/>; default 0.</summary>
        AutoPause = (int)hps_option.HPS_OPT_AUTO_PAUSE,

        /// <summary>Milliseconds a graceful close may go without its peer taking
        /// any unsent bytes before it is forced with <see cref="HpSockError.CloseTimeout"/>;
        /// 1..86400000, default 30000.</summary>
        CloseTimeout = (int)hps_option.HPS_OPT_CLOSE_TIMEOUT,

        /// <summary>UDP: bytes per datagram, 1..65527; default 1432.</summary>
        UdpMaxDatagram = (int)hps_option.HPS_OPT_UDP_MAX_DATAGRAM,

        /// <summary>UDP server/client: detection interval in ms, 0 = off; default 60000.</summary>
        UdpDetectInterval = (int)hps_option.HPS_OPT_UDP_DETECT_INTERVAL,

        /// <summary>UDP server/client: silent intervals before <see cref="HpSockError.UdpIdle"/>; default 3.</summary>
        UdpDetectAttempts = (int)hps_option.HPS_OPT_UDP_DETECT_ATTEMPTS,

        /// <summary>UDP cast: 0 multicast (default), 1 broadcast.</summary>
        UdpCastMode = (int)hps_option.HPS_OPT_UDP_CAST_MODE,

        /// <summary>UDP cast/node: multicast TTL 0..255; default 1.</summary>
        UdpMulticastTtl = (int)hps_option.HPS_OPT_UDP_MULTICAST_TTL,

        /// <summary>UDP cast/node: 1 = own multicast datagrams come back (default).</summary>
        UdpMulticastLoop = (int)hps_option.HPS_OPT_UDP_MULTICAST_LOOP,
        /// <summary>0/1: every connection speaks TLS; default 0.</summary>
        Tls = (int)hps_option.HPS_OPT_TLS,

        /// <summary>A <see cref="HpSock.TlsVerify"/> value; default Peer for agents
        /// and clients, None for servers.</summary>
        TlsVerify = (int)hps_option.HPS_OPT_TLS_VERIFY,

        /// <summary>Lowest TLS version accepted, a <see cref="TlsVersion"/>; default 1.2.</summary>
        TlsMinVersion = (int)hps_option.HPS_OPT_TLS_MIN_VERSION,

        /// <summary>0/1, default 1: session cache (server) and resumption (agent, client).</summary>
        TlsSessionCache = (int)hps_option.HPS_OPT_TLS_SESSION_CACHE,

        /// <summary>Milliseconds from accept/connect to the end of the TLS handshake; default 10000.</summary>
        TlsHandshakeTimeout = (int)hps_option.HPS_OPT_TLS_HANDSHAKE_TIMEOUT,
    }

    /// <summary>String-valued options (TLS), for
    /// <see cref="TcpEndpoint.SetOption(StringOption, string?)"/>. Set only
    /// while not running; null or "" clears one.</summary>
    public enum StringOption
    {
        /// <summary>Certificate (chain) PEM file.</summary>
        TlsCertificateFile = (int)hps_option.HPS_OPT_TLS_CERT_FILE,

        /// <summary>Private key PEM file (encrypted: see <see cref="TlsKeyPassword"/>).</summary>
        TlsKeyFile = (int)hps_option.HPS_OPT_TLS_KEY_FILE,

        /// <summary>Certificate (chain) as PEM text.</summary>
        TlsCertificatePem = (int)hps_option.HPS_OPT_TLS_CERT_PEM,

        /// <summary>Private key as PEM text.</summary>
        TlsKeyPem = (int)hps_option.HPS_OPT_TLS_KEY_PEM,

        /// <summary>Trusted CAs, PEM file; with no CA option the system's store is trusted.</summary>
        TlsCaFile = (int)hps_option.HPS_OPT_TLS_CA_FILE,

        /// <summary>Trusted CAs, hashed directory.</summary>
        TlsCaPath = (int)hps_option.HPS_OPT_TLS_CA_PATH,

        /// <summary>Trusted CAs as PEM text.</summary>
        TlsCaPem = (int)hps_option.HPS_OPT_TLS_CA_PEM,

        /// <summary>TLS 1.2 cipher list (OpenSSL syntax).</summary>
        TlsCiphers = (int)hps_option.HPS_OPT_TLS_CIPHERS,

        /// <summary>TLS 1.3 ciphersuites (OpenSSL syntax).</summary>
        TlsCipherSuites = (int)hps_option.HPS_OPT_TLS_CIPHERSUITES,

        /// <summary>Agent/client: the server name sent (SNI) and verified; default:
        /// the host given to connect/start when it is a name.</summary>
        TlsServerName = (int)hps_option.HPS_OPT_TLS_SNI,

        /// <summary>Passphrase of an encrypted private key. Write-only: reading it
        /// fails with <see cref="HpSockError.InvalidArgument"/>; the library wipes
        /// its copy when freed. An encrypted key without it fails Start with
        /// <see cref="HpSockError.TlsConfig"/>, never a prompt.</summary>
        TlsKeyPassword = (int)hps_option.HPS_OPT_TLS_KEY_PASSWORD,
    }

    /// <summary>Endpoint-wide counters of what overload and hostile peers cost
    /// (<see cref="TcpEndpoint.GetCounter"/>), since the endpoint was made;
    /// restarts keep them.</summary>
    public enum EndpointCounter
    {
        /// <summary>Accept failures (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...); each
        /// pauses accepting on that loop for a back-off.</summary>
        AcceptErrors = (int)hps_counter.HPS_CNT_ACCEPT_ERRORS,

        /// <summary>Connections accepted and closed at once because no descriptor
        /// or memory was left, or <see cref="EndpointOption.MaxConnections"/> was
        /// reached (never reported: no accept event).</summary>
        AcceptShed = (int)hps_counter.HPS_CNT_ACCEPT_SHED,

        /// <summary>Graceful closes forced at <see cref="EndpointOption.CloseTimeout"/>.</summary>
        CloseTimeouts = (int)hps_counter.HPS_CNT_CLOSE_TIMEOUTS,

        /// <summary>Automatic pauses (<see cref="EndpointOption.AutoPause"/>).</summary>
        AutoPauses = (int)hps_counter.HPS_CNT_AUTO_PAUSES,

        /// <summary>UDP server: datagrams from new peer addresses dropped because
        /// the peer table was full.</summary>
        UdpPeersRefused = (int)hps_counter.HPS_CNT_UDP_PEERS_REFUSED,

        /// <summary>UDP server: unconfirmed peers evicted for a new address.</summary>
        UdpPeersEvicted = (int)hps_counter.HPS_CNT_UDP_PEERS_EVICTED,
    }

    /// <summary>How the TLS peer is verified (<see cref="EndpointOption.TlsVerify"/>).</summary>
    public enum TlsVerify
    {
        /// <summary>No check (a server asks for no client certificate).</summary>
        None = (int)hps_tls_verify.HPS_TLS_VERIFY_NONE,

        /// <summary>The peer's certificate must chain to a trusted CA and, for a
        /// client, match the server name.</summary>
        Peer = (int)hps_tls_verify.HPS_TLS_VERIFY_PEER,

        /// <summary>As Peer; a server also fails a client without a certificate.</summary>
        Require = (int)hps_tls_verify.HPS_TLS_VERIFY_REQUIRE,
    }

    /// <summary>TLS protocol versions (<see cref="EndpointOption.TlsMinVersion"/>).</summary>
    public enum TlsVersion
    {
        /// <summary>TLS 1.2 (the default floor).</summary>
        Tls12 = 0x0303,

        /// <summary>TLS 1.3.</summary>
        Tls13 = 0x0304,
    }

    /// <summary>What <see cref="TcpEndpoint.GetTlsInfo(ulong, TlsInfoKind)"/> reads.</summary>
    public enum TlsInfoKind
    {
        /// <summary>Why the connection failed ("" if it did not).</summary>
        Error = (int)hps_tls_info_kind.HPS_TLS_INFO_ERROR,

        /// <summary>The protocol version, e.g. "TLSv1.3".</summary>
        Version = (int)hps_tls_info_kind.HPS_TLS_INFO_VERSION,

        /// <summary>The cipher name.</summary>
        Cipher = (int)hps_tls_info_kind.HPS_TLS_INFO_CIPHER,

        /// <summary>The server name sent (client) or received (server).</summary>
        ServerName = (int)hps_tls_info_kind.HPS_TLS_INFO_SERVER_NAME,

        /// <summary>The peer certificate's subject, or "".</summary>
        PeerSubject = (int)hps_tls_info_kind.HPS_TLS_INFO_PEER_SUBJECT,

        /// <summary>"1" if the session was resumed, else "0".</summary>
        Resumed = (int)hps_tls_info_kind.HPS_TLS_INFO_RESUMED,

        /// <summary>Endpoint: why the last start failed with TlsConfig.</summary>
        ConfigError = (int)hps_tls_info_kind.HPS_TLS_INFO_CONFIG_ERROR,
    }

    /// <summary>hpsock's error codes (negative). Any other negative value is a
    /// system error (-errno, e.g. -104 for ECONNRESET); names and messages for
    /// both come from <see cref="HpSockException.GetName(int)"/> and
    /// <see cref="HpSockException.GetMessage(int)"/>.</summary>
    public enum HpSockError
    {
        /// <summary>No error.</summary>
        None = 0,

        /// <summary>HPS_EINVAL: invalid argument.</summary>
        InvalidArgument = (int)hps_errno.HPS_EINVAL,

        /// <summary>HPS_EHANDLE: invalid endpoint handle.</summary>
        InvalidHandle = (int)hps_errno.HPS_EHANDLE,

        /// <summary>HPS_ENOTFOUND: connection not found (closed, closing or stale ID).</summary>
        NotFound = (int)hps_errno.HPS_ENOTFOUND,

        /// <summary>HPS_ESTATE: not allowed in the endpoint's (or connection's) current state.</summary>
        InvalidState = (int)hps_errno.HPS_ESTATE,

        /// <summary>HPS_EROLE: not supported by this endpoint's role.</summary>
        WrongRole = (int)hps_errno.HPS_EROLE,

        /// <summary>HPS_EMODEL: not supported by this receive model.</summary>
        WrongModel = (int)hps_errno.HPS_EMODEL,

        /// <summary>HPS_ENOMEM: out of memory.</summary>
        OutOfMemory = (int)hps_errno.HPS_ENOMEM,

        /// <summary>HPS_ESENDQ: the connection's send queue limit would be exceeded.</summary>
        SendQueueFull = (int)hps_errno.HPS_ESENDQ,

        /// <summary>HPS_ELIMIT: connection limit reached.</summary>
        ConnectionLimit = (int)hps_errno.HPS_ELIMIT,

        /// <summary>HPS_EINLOOP: not allowed from the endpoint's own loop thread.</summary>
        InLoop = (int)hps_errno.HPS_EINLOOP,

        /// <summary>HPS_EHANDLER: an event handler returned Error (or threw).</summary>
        Handler = (int)hps_errno.HPS_EHANDLER,

        /// <summary>HPS_EADDR: invalid or unresolvable address.</summary>
        Address = (int)hps_errno.HPS_EADDR,

        /// <summary>HPS_ESTOPPING: the endpoint is stopping.</summary>
        Stopping = (int)hps_errno.HPS_ESTOPPING,

        /// <summary>HPS_ETIMEDOUT: operation timed out.</summary>
        TimedOut = (int)hps_errno.HPS_ETIMEDOUT,

        /// <summary>HPS_EAGAIN: not enough data waiting (pull model).</summary>
        Again = (int)hps_errno.HPS_EAGAIN,

        /// <summary>HPS_EPACKFLAG: pack header flag mismatch.</summary>
        PackFlag = (int)hps_errno.HPS_EPACKFLAG,

        /// <summary>HPS_EPACKSIZE: pack length exceeds the max pack size.</summary>
        PackSize = (int)hps_errno.HPS_EPACKSIZE,

        /// <summary>HPS_EPACKEMPTY: pack body is empty.</summary>
        PackEmpty = (int)hps_errno.HPS_EPACKEMPTY,

        /// <summary>HPS_EPULLFULL: pull buffer limit exceeded.</summary>
        PullFull = (int)hps_errno.HPS_EPULLFULL,

        /// <summary>HPS_ESILENCE: connection silent past the silence timeout.</summary>
        Silence = (int)hps_errno.HPS_ESILENCE,

        /// <summary>HPS_EFILE: the file cannot be read for sending.</summary>
        File = (int)hps_errno.HPS_EFILE,

        /// <summary>HPS_ECLOSETIMEOUT: a graceful close passed
        /// <see cref="EndpointOption.CloseTimeout"/> with bytes unsent and was forced.</summary>
        CloseTimeout = (int)hps_errno.HPS_ECLOSETIMEOUT,

        /// <summary>HPS_EDGRAMSIZE: datagram larger than the max datagram size.</summary>
        DatagramSize = (int)hps_errno.HPS_EDGRAMSIZE,

        /// <summary>HPS_EUDPIDLE: UDP peer silent past detect interval x attempts.</summary>
        UdpIdle = (int)hps_errno.HPS_EUDPIDLE,
        /// <summary>HPS_ETLS: TLS protocol error (see <see cref="TcpEndpoint.GetTlsError(ulong)"/>).</summary>
        Tls = (int)hps_errno.HPS_ETLS,

        /// <summary>HPS_ETLSVERIFY: TLS peer certificate verification failed.</summary>
        TlsVerify = (int)hps_errno.HPS_ETLSVERIFY,

        /// <summary>HPS_ETLSCONFIG: TLS configuration invalid (see <see cref="TcpEndpoint.TlsConfigError"/>).</summary>
        TlsConfig = (int)hps_errno.HPS_ETLSCONFIG,

        /// <summary>HPS_ETLSEOF: TLS stream cut without close_notify.</summary>
        TlsEof = (int)hps_errno.HPS_ETLSEOF,

        /// <summary>HPS_ETLSNOTTLS: the peer did not speak TLS.</summary>
        TlsNotTls = (int)hps_errno.HPS_ETLSNOTTLS,

        /// <summary>HPS_ETLSALERT: the peer sent a fatal TLS alert.</summary>
        TlsAlert = (int)hps_errno.HPS_ETLSALERT,

        /// <summary>HPS_ENOTLS: TLS is not enabled on this endpoint.</summary>
        NoTls = (int)hps_errno.HPS_ENOTLS,
    }
}
