/* swig/java/hpsock_java.i - the Java side of the SWIG interface.
 *
 * Generates org.hpsock.internal (Native, NativeJNI, NativeConstants): not
 * API. The public API is the hand-written layer in java/ (org.hpsock),
 * which is the only user of these classes.
 *
 * Type mapping:
 *   hps_endpoint *  -> long  (the raw handle; no wrapper object per call)
 *   hps_conn_id     -> long  (64-bit ID, bit pattern kept; IDs are opaque)
 *   uintptr_t       -> long  (extra data)
 *   int64_t         -> long, uint16_t -> int, const char * -> String
 *
 * What swig/hpsock.i ignores (the event callback, out-parameters, raw
 * buffers) is bridged by hand in hpsock_jni.c and declared here with
 * %native, so every JNI entry point lives in NativeJNI. */
%module(jniclassname="NativeJNI") Native

%pragma(java) moduleclassmodifiers="public final class"
%pragma(java) jniclassclassmodifiers="public final class"
%pragma(java) jniclasscode=%{
  /* The native libraries are loaded by NativeLoader before first use. */
  static { NativeLoader.load(); }
%}

/* Enums as plain int constants in NativeConstants; the public layer has
 * its own Java enums and checks them against these in its tests. */
%include "enumsimple.swg"
%javaconst(1);
/* A C literal with a 'u' suffix is not Java: read the value from the
 * compiled header at class load instead of copying it here. */
%javaconst(0) HPS_EVENTS_ALL;

/* Pointers and 64-bit IDs as Java long, without wrapper objects. */
%define HPSJ_LONG_TYPE(CTYPE)
%typemap(jni) CTYPE "jlong"
%typemap(jtype) CTYPE "long"
%typemap(jstype) CTYPE "long"
%typemap(javain) CTYPE "$javainput"
%typemap(javaout) CTYPE { return $jnicall; }
%typemap(in) CTYPE %{ $1 = (CTYPE)(uintptr_t)$input; %}
%typemap(out) CTYPE %{ $result = (jlong)(uintptr_t)$1; %}
%enddef
HPSJ_LONG_TYPE(hps_endpoint *)
HPSJ_LONG_TYPE(hps_conn_id)
HPSJ_LONG_TYPE(uintptr_t)

/* Structs the Java layer reads through the hand-written bridge only. */
%ignore hps_stats;
/* Out-parameters bridged in hpsock_jni.c (getUnsent, getCounter), whatever
 * the shared file does with them. */
%ignore hps_get_unsent;
%ignore hps_get_counter;
/* The functions hps_state()/hps_role() share their names with enums;
 * Java gets them as state()/role(). */
%rename(state) hps_state(hps_endpoint *);
%rename(role) hps_role(hps_endpoint *);

%include "../hpsock.i"

/* ---- the hand-written bridge (hpsock_jni.c) ---- */
%typemap(jtype) jobject buf "java.nio.ByteBuffer"
%typemap(jstype) jobject buf "java.nio.ByteBuffer"
%typemap(jtype) jobject endpoint "Object"
%typemap(jstype) jobject endpoint "Object"

/* Bridge context: create/free, with the endpoint's event callback. */
%native(create) jlong create(jint role);
%native(handle) jlong handle(jlong ctx);
%native(start) jint start(jlong ctx, jobject endpoint, jstring host, jint port);
%native(destroy) jint destroy(jlong ctx);
/* Sends. */
%native(sendDirect) jint sendDirect(jlong ep, jlong id, jobject buf, jint off, jint len);
%native(sendAddress) jint sendAddress(jlong ep, jlong id, jlong address, jint len);
%native(sendArray) jint sendArray(jlong ep, jlong id, jbyteArray data, jint off, jint len);
%native(sendv) jint sendv(jlong ep, jlong id, jobjectArray items, jintArray offs, jintArray lens);
%native(sendTo) jint sendTo(jlong ep, jstring host, jint port, jbyteArray data, jint off, jint len);
/* Pull model. */
%native(fetchDirect) jint fetchDirect(jlong ep, jlong id, jobject buf, jint off, jint len, jboolean take);
%native(fetchAddress) jint fetchAddress(jlong ep, jlong id, jlong address, jint len, jboolean take);
%native(fetchArray) jint fetchArray(jlong ep, jlong id, jbyteArray data, jint off, jint len, jboolean take);
/* Out-parameters. */
%native(getopt) jint getopt(jlong ep, jint opt, jlongArray out);
%native(connect) jint connect(jlong ep, jstring host, jint port, jlongArray out);
%native(connList) jlongArray connList(jlong ep);
%native(address) jint address(jlong ep, jlong id, jint which, jobjectArray hostOut);
%native(getExtra) jint getExtra(jlong ep, jlong id, jlongArray out);
%native(getStats) jint getStats(jlong ep, jlong id, jlongArray out);
%native(getUnsent) jint getUnsent(jlong ep, jlong id, jlongArray out);
%native(getCounter) jint getCounter(jlong ep, jint counter, jlongArray out);
/* Bookkeeping for the leak tests. */
%native(liveGlobalRefs) jlong liveGlobalRefs();
%native(attachedThreads) jlong attachedThreads();
%native(liveContexts) jlong liveContexts();
%native(bufferAddress) jlong bufferAddress(jobject buf);
