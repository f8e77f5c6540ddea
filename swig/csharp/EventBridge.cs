// EventBridge.cs - the callback bridge between hpsock's one C callback and
// the managed endpoints.
//
// - One delegate per callback signature (EventCallback), held in a static
//   field: it outlives every endpoint, so the function pointer C holds never
//   dangles.
// - The endpoint's user data is a GCHandle (see EndpointHandle), resolved to
//   an IEventTarget on every event.
// - No exception ever crosses into native code: whatever the target throws
//   is caught here, reported through the target, and the event's result is
//   ERROR (for a connection event that closes the connection with
//   HPS_EHANDLER; for CLOSE and SHUTDOWN hpsock ignores it).
using System;
using System.Runtime.InteropServices;

namespace HpSock.Interop
{
    /// <summary>hps_event_fn: <c>int (*)(void *user, const hps_event *ev)</c>.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int EventCallback(IntPtr user, IntPtr ev);

    /// <summary>hps_event, field for field (fields are only ever appended).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeEvent
    {
        public int Type;
        public int Op;
        public int Error;
        public int Reserved;
        public IntPtr Endpoint;
        public ulong Conn;
        public IntPtr Data;
        public nuint Len;
        public nuint Extra;
        public long Fd;
        public IntPtr Addr; // appended for UDP: the peer's numeric host, or null
        public int Port;
    }

    /// <summary>What the bridge delivers events to: the managed endpoint.</summary>
    internal interface IEventTarget
    {
        /// <summary>Handles one event; returns an hps_result value.</summary>
        int OnNativeEvent(in NativeEvent ev);

        /// <summary>Reports an exception a handler threw. Must not throw.</summary>
        void OnHandlerException(Exception exception, in NativeEvent ev);
    }

    internal static unsafe class EventBridge
    {
        private const int ResultOk = (int)hps_result.HPS_HR_OK;
        private const int ResultError = (int)hps_result.HPS_HR_ERROR;

        /// <summary>The delegate C calls for every endpoint. Static: alive for
        /// the process, hence for the lifetime of every endpoint.</summary>
        internal static readonly EventCallback Callback = OnEvent;

        private static int OnEvent(IntPtr user, IntPtr evp)
        {
            ref readonly NativeEvent ev = ref *(NativeEvent*)evp;
            IEventTarget? target;
            try
            {
                target = GCHandle.FromIntPtr(user).Target as IEventTarget;
            }
            catch (Exception ex)
            {
                Report(ex, null);
                return ResultError;
            }
            // The endpoint object was collected (never disposed, not running):
            // nothing is left to deliver to.
            if (target is null) return ResultOk;
            try
            {
                return target.OnNativeEvent(in ev);
            }
            catch (Exception ex)
            {
                try
                {
                    target.OnHandlerException(ex, in ev);
                }
                catch (Exception inner)
                {
                    Report(inner, ex);
                }
                return ResultError;
            }
        }

        /// <summary>Last-resort report when the normal channel failed.</summary>
        internal static void Report(Exception exception, Exception? cause)
        {
            try
            {
                Console.Error.WriteLine(
                    cause is null
                        ? $"hpsock: exception in the event bridge: {exception}"
                        : $"hpsock: exception while reporting a handler exception: {exception}\ncaused by: {cause}");
            }
            catch
            {
                // Nowhere left to report to; never let it reach native code.
            }
        }
    }
}
