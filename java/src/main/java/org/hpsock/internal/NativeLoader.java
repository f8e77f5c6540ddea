package org.hpsock.internal;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Loads the native libraries carried inside the JAR: copies them from {@code
 * /native/<platform>/} to a private temporary directory and {@code System.load}s them, libuv (when
 * bundled) and libhpsock before the JNI library that needs them. The files are deleted once
 * loaded (the mappings stay). Not API.
 */
public final class NativeLoader {
  /** Resource names, in load order; a missing optional one is skipped. */
  private static final String[] LIBS = {"libuv.so.1", "libhpsock.so", "libhpsock_jni.so"};

  private static final boolean[] OPTIONAL = {true, false, false};

  private static boolean loaded;

  private NativeLoader() {}

  /** The resource directory for this platform. */
  static String platform() {
    String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
    String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
    if (os.startsWith("linux") && (arch.equals("amd64") || arch.equals("x86_64"))) {
      return "linux-x86_64";
    }
    throw new UnsatisfiedLinkError(
        "hpsock: no native library for " + os + "/" + arch + " in this JAR (linux-x86_64 only)");
  }

  /** Loads the libraries once; later calls return at once. */
  public static synchronized void load() {
    if (loaded) {
      return;
    }
    String dir = "/native/" + platform() + "/";
    Path tmp = null;
    List<Path> files = new ArrayList<>();
    try {
      tmp = Files.createTempDirectory("hpsock-native-"); // owner-only permissions
      for (int i = 0; i < LIBS.length; i++) {
        try (InputStream in = NativeLoader.class.getResourceAsStream(dir + LIBS[i])) {
          if (in == null) {
            if (OPTIONAL[i]) {
              continue;
            }
            throw new UnsatisfiedLinkError("hpsock: " + dir + LIBS[i] + " missing from the JAR");
          }
          Path f = tmp.resolve(LIBS[i]);
          Files.copy(in, f, StandardCopyOption.REPLACE_EXISTING);
          files.add(f);
        }
      }
      for (Path f : files) {
        System.load(f.toAbsolutePath().toString());
      }
      loaded = true;
    } catch (IOException e) {
      UnsatisfiedLinkError err = new UnsatisfiedLinkError("hpsock: cannot extract " + dir);
      err.initCause(e);
      throw err;
    } finally {
      for (Path f : files) {
        try {
          Files.deleteIfExists(f);
        } catch (IOException ignored) {
          // best effort: the directory is private and temporary
        }
      }
      if (tmp != null) {
        try {
          Files.deleteIfExists(tmp);
        } catch (IOException ignored) {
          // best effort
        }
      }
    }
  }
}
