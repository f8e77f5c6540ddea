// EndpointHandle.cs - the SafeHandle owning one hps_endpoint and the GCHandle
// passed to hps_create as its user data.
//
// Every generated P/Invoke takes the endpoint as this SafeHandle, so a call
// in flight holds a reference and Dispose frees the native endpoint only once
// no call uses it any more. The release:
// - hps_free stops the endpoint (SHUTDOWN delivered) and frees it; then no
//   event can follow, so the user-data GCHandle is freed too;
// - on one of the endpoint's own loop threads (Dispose from inside a handler)
//   hps_free returns HPS_EINLOOP by design: the stop is begun there
//   (asynchronous from a handler) and a thread-pool work item frees the
//   endpoint, and the GCHandle after it, once the stop has finished.
using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace HpSock.Interop
{
    internal sealed class EndpointHandle : SafeHandle
    {
        private IntPtr _user;

        private EndpointHandle() : base(IntPtr.Zero, ownsHandle: true)
        {
        }

        /// <inheritdoc/>
        public override bool IsInvalid => handle == IntPtr.Zero;

        /// <summary>The raw endpoint pointer, for comparison with
        /// <see cref="NativeEvent.Endpoint"/>; never for calls.</summary>
        internal IntPtr Raw => handle;

        /// <summary>Creates an endpoint of a role whose events go to target.
        /// The target is held weakly: the endpoint object roots itself while it
        /// runs (see TcpEndpoint).</summary>
        internal static EndpointHandle Create(int role, IEventTarget target)
        {
            var result = new EndpointHandle();
            GCHandle user = GCHandle.Alloc(target, GCHandleType.Weak);
            int r = hpsock_csharp.hps_create(role, EventBridge.Callback, GCHandle.ToIntPtr(user), out IntPtr raw);
            if (r != 0)
            {
                user.Free();
                result.SetHandleAsInvalid();
                throw HpSockException.FromCode(r, "hps_create");
            }
            result._user = GCHandle.ToIntPtr(user);
            result.SetHandle(raw);
            return result;
        }

        /// <inheritdoc/>
        protected override bool ReleaseHandle()
        {
            IntPtr ep = handle, user = _user;
            int r = Native.hps_free(ep);
            if (r == (int)hps_errno.HPS_EINLOOP)
            {
                // Inside one of this endpoint's handlers: begin the stop here
                // (asynchronous on a loop thread) and free from elsewhere.
                Native.hps_stop(ep);
                ThreadPool.UnsafeQueueUserWorkItem(static s => FreeLater(s), (ep, user), preferLocal: false);
                return true;
            }
            FreeUser(user);
            return r == 0;
        }

        private static void FreeLater((IntPtr Ep, IntPtr User) s)
        {
            // Blocks until SHUTDOWN was delivered and the loop threads ended.
            int r = Native.hps_free(s.Ep);
            if (r != 0)
            {
                EventBridge.Report(new HpSockException(r, "hps_free"), null);
                return; // the endpoint still exists: keep its GCHandle valid
            }
            FreeUser(s.User);
        }

        private static void FreeUser(IntPtr user)
        {
            if (user != IntPtr.Zero) GCHandle.FromIntPtr(user).Free();
        }
    }
}
