/* swig/csharp/hpsock_csharp.i - the C# side of the SWIG interface.
 *
 *   swig -csharp -namespace HpSock -dllimport hpsock_csharp \
 *        -I<capi/include> -outdir <dir> -o hpsock_csharp_wrap.c hpsock_csharp.i
 *
 * Generates the P/Invoke layer (class hpsock_csharpPINVOKE), the module class
 * hpsock_csharp and one C# enum per C enum, all internal: the public API is
 * the hand-written layer in csharp/src. The C glue (hpsock_csharp_wrap.c)
 * becomes libhpsock_csharp.so, linked against libhpsock.so.
 *
 * What this file adds to the shared swig/hpsock.i:
 * - an endpoint handle is a SafeHandle (HpSock.Interop.EndpointHandle), so
 *   a call racing with Dispose never reaches a freed endpoint: the release
 *   waits for calls in flight;
 * - the event callback bridge: hps_create takes a delegate
 *   (HpSock.Interop.EventCallback, see EventBridge.cs beside this file) and
 *   a GCHandle as user data;
 * - enums come out as internal C# enums, so the hand-written public enums
 *   take their values from the header through them.
 *
 * The rest of what hpsock.i leaves to each language (send, sendv, fetch,
 * peek, out-parameters, addresses, stats, connection lists) is bridged by
 * blittable P/Invoke straight into libhpsock (Native.cs beside this file):
 * those are the hot path or take spans, and a direct call with a pinned span
 * is both the fastest and the simplest marshaling there is. */

%module hpsock_csharp

%{
#include "hpsock.h"
%}

/* Internal: only the idiomatic layer is public. */
%pragma(csharp) moduleclassmodifiers="internal static class"
%pragma(csharp) imclassclassmodifiers="internal class"
%typemap(csclassmodifiers) enum SWIGTYPE "internal enum"
%typemap(csclassmodifiers) SWIGTYPE, SWIGTYPE *, SWIGTYPE & "internal class"

/* ---- the endpoint handle: a SafeHandle in every generated signature ---- */

%typemap(ctype) hps_endpoint * "void *"
%typemap(imtype) hps_endpoint * "global::HpSock.Interop.EndpointHandle"
%typemap(cstype) hps_endpoint * "global::HpSock.Interop.EndpointHandle"
%typemap(in) hps_endpoint * %{ $1 = (hps_endpoint *)$input; %}
%typemap(csin) hps_endpoint * "$csinput"

/* ---- hps_create: the callback bridge ----
 * fn is the delegate HpSock.Interop.EventCallback; the marshaler hands C a
 * function pointer for it. The bridge keeps that delegate in a static field
 * (one per callback signature), so it outlives every endpoint. user is a
 * GCHandle as IntPtr; out receives the raw handle, which the caller wraps in
 * an EndpointHandle at once. */

%typemap(ctype) hps_event_fn "hps_event_fn"
%typemap(imtype) hps_event_fn "global::HpSock.Interop.EventCallback"
%typemap(cstype) hps_event_fn "global::HpSock.Interop.EventCallback"
%typemap(in) hps_event_fn %{ $1 = $input; %}
%typemap(csin) hps_event_fn "$csinput"

%typemap(ctype) void *user "void *"
%typemap(imtype) void *user "global::System.IntPtr"
%typemap(cstype) void *user "global::System.IntPtr"
%typemap(in) void *user %{ $1 = $input; %}
%typemap(csin) void *user "$csinput"

%typemap(ctype) hps_endpoint **out "void **"
%typemap(imtype) hps_endpoint **out "out global::System.IntPtr"
%typemap(cstype) hps_endpoint **out "out global::System.IntPtr"
%typemap(in) hps_endpoint **out %{ $1 = (hps_endpoint **)$input; %}
%typemap(csin) hps_endpoint **out "out $csinput"

/* hpsock.i ignores hps_create so that every language bridges it; this is
 * the C# bridge. The handle goes out raw: a SafeHandle cannot be an out
 * value before it exists. */
%rename(hps_create) hpscs_create;
%inline %{
int hpscs_create(int role, hps_event_fn fn, void *user, hps_endpoint **out) {
  return hps_create(role, fn, user, out);
}
%}

/* ---- names and types the shared file leaves ambiguous ----
 * enum hps_state / enum hps_role share their names with the functions
 * hps_state() / hps_role(); without a rename SWIG drops the functions
 * (warning 302). uintptr_t is 32 bits in SWIG's stdint.i unless
 * SWIGWORDSIZE64, which would also make int64_t a C# int: map it to nuint
 * here instead. */
%rename("hps_state_kind", %$isenum) hps_state;
%rename("hps_role_kind", %$isenum) hps_role;

%typemap(ctype) uintptr_t "uintptr_t"
%typemap(imtype) uintptr_t "global::System.UIntPtr"
%typemap(cstype) uintptr_t "global::System.UIntPtr"
%typemap(in) uintptr_t %{ $1 = $input; %}
%typemap(out) uintptr_t %{ $result = $1; %}
%typemap(csin) uintptr_t "$csinput"
%typemap(csout, excode=SWIGEXCODE) uintptr_t {
    global::System.UIntPtr ret = $imcall;$excode
    return ret;
  }

/* ---- functions bridged by direct P/Invoke (Native.cs) ----
 * hps_free takes the raw handle: it runs from SafeHandle.ReleaseHandle,
 * when the SafeHandle itself can no longer be marshaled. hps_stats is read
 * as a blittable struct. */
/* hps_buf is ignored by hpsock.i; its field "base" is a C# keyword. */
%warnfilter(314) hps_buf::base;

%ignore hps_free;
%ignore hps_stats;
/* Out-parameters bridged in Native.cs, whatever the shared file does. */
%ignore hps_get_unsent;
%ignore hps_get_counter;

%include "../hpsock.i"
