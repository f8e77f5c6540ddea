package org.hpsock.internal;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.reflect.Field;
import java.nio.Buffer;
import java.nio.ByteBuffer;

/**
 * Reads a direct buffer's native address without a JNI call, so a send of a direct buffer is a
 * JNI call with primitive arguments only (no {@code GetDirectBufferAddress}, which costs VM
 * transitions and a type check per call). Uses {@code sun.misc.Unsafe} (module jdk.unsupported)
 * through method handles, checked once against {@code GetDirectBufferAddress}; when any of it is
 * missing or disagrees, {@link #AVAILABLE} is false and callers take the JNI path. Not API.
 */
public final class DirectAddress {
  /** Whether {@link #of(ByteBuffer)} may be used. */
  public static final boolean AVAILABLE;

  private static final MethodHandle GET_LONG; // (Object, long) long, bound to Unsafe
  private static final long OFFSET;

  static {
    MethodHandle get = null;
    long off = -1;
    boolean ok = false;
    try {
      Class<?> c = Class.forName("sun.misc.Unsafe");
      Field f = c.getDeclaredField("theUnsafe");
      f.setAccessible(true);
      Object unsafe = f.get(null);
      MethodHandles.Lookup l = MethodHandles.lookup();
      MethodHandle fieldOffset =
          l.findVirtual(c, "objectFieldOffset", MethodType.methodType(long.class, Field.class));
      off = (long) fieldOffset.invoke(unsafe, Buffer.class.getDeclaredField("address"));
      get = l.findVirtual(c, "getLong",
              MethodType.methodType(long.class, Object.class, long.class))
          .bindTo(unsafe);
      ByteBuffer probe = ByteBuffer.allocateDirect(16);
      long viaUnsafe = (long) get.invokeExact((Object) probe, off);
      ok = viaUnsafe != 0 && viaUnsafe == NativeJNI.bufferAddress(probe);
    } catch (Throwable t) {
      ok = false;
    }
    AVAILABLE = ok;
    GET_LONG = ok ? get : null;
    OFFSET = off;
  }

  private DirectAddress() {}

  /**
   * The address of a direct buffer's first byte. Only when {@link #AVAILABLE}; the caller keeps
   * the buffer reachable while it uses the address.
   *
   * @param b a direct buffer
   * @return its address
   */
  public static long of(ByteBuffer b) {
    try {
      return (long) GET_LONG.invokeExact((Object) b, OFFSET);
    } catch (Throwable t) {
      throw new IllegalStateException(t);
    }
  }
}
