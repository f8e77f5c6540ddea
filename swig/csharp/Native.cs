// Native.cs - direct, blittable P/Invoke into libhpsock for what the shared
// swig/hpsock.i leaves to each language: the hot path (send, sendv, fetch,
// peek, with pinned spans), out-parameters (getopt, connect, extra, stats,
// unsent bytes, counters, addresses, connection lists) and the raw-handle calls a SafeHandle release
// needs (free, stop). Everything else goes through the SWIG-generated
// hpsock_csharpPINVOKE into libhpsock_csharp.
//
// Loading: the package carries libhpsock.so, libhpsock_csharp.so and
// (normally) libuv.so.1 in runtimes/linux-x64/native. The glue's DT_NEEDED
// is the library's SONAME (libhpsock.so.0) and libhpsock's is libuv.so.1;
// the dynamic loader matches a NEEDED entry against an already loaded
// library by SONAME. So the resolver below loads, in order, the package's
// libuv (if it carries one; else the system's is found as usual), libhpsock,
// then lets the default probing load the library asked for.
using System;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace HpSock.Interop
{
    /// <summary>hps_buf.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct NativeBuf
    {
        public void* Base;
        public nuint Len;
    }

    /// <summary>hps_stats.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeStats
    {
        public ulong BytesSent;
        public ulong BytesReceived;
        public ulong MsgsSent;
        public ulong MsgsReceived;
        public ulong AgeMs;
        public ulong SilenceMs;
    }

    internal static unsafe class Native
    {
        internal const string Library = "hpsock";
        internal const string GlueLibrary = "hpsock_csharp";
        internal const string UvLibrary = "libuv.so.1";

        /// <summary>Big enough for any numeric host (INET6_ADDRSTRLEN is 46).</summary>
        internal const int HostBufferSize = 64;

        // A library using a module initializer is what CA2255 warns about; here
        // it is the one way to register the resolver before any P/Invoke.
#pragma warning disable CA2255
        [ModuleInitializer]
#pragma warning restore CA2255
        internal static void Init()
        {
            NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, Resolve);
        }

        private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        {
            if (name == Library || name == GlueLibrary)
            {
                NativeLibrary.TryLoad(UvLibrary, assembly, path, out _);
                if (name == GlueLibrary) NativeLibrary.TryLoad(Library, assembly, path, out _);
            }
            return IntPtr.Zero; // default probing loads the library asked for
        }

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_free(IntPtr ep);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_stop(IntPtr ep);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_getopt(IntPtr ep, int opt, long* value);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_send(IntPtr ep, ulong id, byte* data, nuint len);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_sendv(IntPtr ep, ulong id, NativeBuf* bufs, int n);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_fetch(IntPtr ep, ulong id, byte* buf, nuint len);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_peek(IntPtr ep, ulong id, byte* buf, nuint len);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_connect(IntPtr ep, byte* host, ushort port, ulong* id);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_listen_address(IntPtr ep, byte* host, nuint hostlen, ushort* port);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_local_address(IntPtr ep, ulong id, byte* host, nuint hostlen, ushort* port);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_remote_address(IntPtr ep, ulong id, byte* host, nuint hostlen, ushort* port);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_get_extra(IntPtr ep, ulong id, nuint* extra);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_get_stats(IntPtr ep, ulong id, NativeStats* stats);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_get_unsent(IntPtr ep, ulong id, ulong* unsent);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_get_counter(IntPtr ep, int counter, ulong* value);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_conn_list(IntPtr ep, ulong* ids, nuint cap, nuint* count);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_send_to(IntPtr ep, byte* host, ushort port, byte* data, nuint len);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_join_group(IntPtr ep, byte* group, byte* iface);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_leave_group(IntPtr ep, byte* group, byte* iface);

        [DllImport(Library, ExactSpelling = true)]
        internal static extern int hps_cast_interface(IntPtr ep, byte* iface);
    }
}
