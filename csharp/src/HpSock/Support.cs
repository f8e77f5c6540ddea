// Support.cs - small public value types: statistics, handler-exception
// arguments, the library version.
using System;

namespace HpSock
{
    /// <summary>Counters of one connection, or of a whole endpoint (totals
    /// since its last start, closed connections included).</summary>
    public readonly struct ConnectionStats
    {
        internal ConnectionStats(in Interop.NativeStats s)
        {
            BytesSent = s.BytesSent;
            BytesReceived = s.BytesReceived;
            MessagesSent = s.MsgsSent;
            MessagesReceived = s.MsgsReceived;
            Age = TimeSpan.FromMilliseconds(s.AgeMs);
            Silence = TimeSpan.FromMilliseconds(s.SilenceMs);
        }

        /// <summary>Bytes handed to the kernel.</summary>
        public ulong BytesSent { get; }

        /// <summary>Bytes received.</summary>
        public ulong BytesReceived { get; }

        /// <summary>Sends accepted (Send, SendV and SendFile calls).</summary>
        public ulong MessagesSent { get; }

        /// <summary>Receive events delivered.</summary>
        public ulong MessagesReceived { get; }

        /// <summary>Connection: time since accept or connect (zero for totals).</summary>
        public TimeSpan Age { get; }

        /// <summary>Connection: time since the last receive (zero for totals).</summary>
        public TimeSpan Silence { get; }

        /// <inheritdoc/>
        public override string ToString() =>
            $"sent {BytesSent} B/{MessagesSent} msgs, received {BytesReceived} B/{MessagesReceived} msgs, age {Age}, silence {Silence}";
    }

    /// <summary>A handler threw: the exception, and which event of which
    /// connection. The event was treated as <see cref="HandleResult.Error"/>.</summary>
    public sealed class HandlerExceptionEventArgs : EventArgs
    {
        internal HandlerExceptionEventArgs(Exception exception, EventKinds eventKind, ulong connId)
        {
            Exception = exception;
            Event = eventKind;
            ConnectionId = connId;
        }

        /// <summary>What the handler threw.</summary>
        public Exception Exception { get; }

        /// <summary>The event being handled (one flag).</summary>
        public EventKinds Event { get; }

        /// <summary>The connection, or 0 (shutdown, a server's prepare).</summary>
        public ulong ConnectionId { get; }
    }

    /// <summary>The native library actually loaded.</summary>
    public static class HpSockLibrary
    {
        /// <summary>"MAJOR.MINOR.PATCH" of the loaded libhpsock.</summary>
        public static string Version => hpsock_csharp.hps_version();

        /// <summary>(MAJOR &lt;&lt; 16) | (MINOR &lt;&lt; 8) | PATCH of the loaded libhpsock.</summary>
        public static int VersionHex => (int)hpsock_csharp.hps_version_hex();
    }
}
