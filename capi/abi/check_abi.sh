#!/usr/bin/env bash
# check_abi.sh - compare libhpsock.so's ABI with the abigail baseline
# capi/abi/hpsock.abi (types, functions, sizes and layouts of everything
# capi/include/hpsock.h exposes), so an accidental ABI break fails CI. The
# exported symbol list is checked at build time too (capi/abi/check.cmake);
# this goes further: a changed struct layout, enum value, parameter or
# return type is caught as well.
#
#   capi/abi/check_abi.sh [LIB]            check (exit 0: same ABI)
#   capi/abi/check_abi.sh --update [LIB]   write a new baseline from LIB
#
# LIB is a libhpsock.so with debug info (DWARF, e.g. RelWithDebInfo); when
# it is omitted, the script builds one in build-abi/ (RelWithDebInfo, no
# tests, no examples). Needs abidw and abidiff (Debian: abigail-tools).
#
# The dump keeps no file paths (no corpus path, no compilation directory,
# no source locations), so it does not depend on where the tree is checked
# out; type IDs are content hashes, so an unchanged ABI gives the same file.
# An intended ABI change: run with --update and commit hpsock.abi with it
# (and bump the version as hpsock.h's ABI rules say).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
baseline=$here/hpsock.abi
update=0
lib=""
for arg in "$@"; do
  case $arg in
  --update) update=1 ;;
  -h | --help)
    sed -n '2,20p' "$0"
    exit 0
    ;;
  -*)
    echo "check_abi: unknown option $arg" >&2
    exit 2
    ;;
  *) lib=$arg ;;
  esac
done

for tool in abidw abidiff; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "check_abi: $tool not found (install abigail-tools)" >&2
    exit 2
  }
done

if [ -z "$lib" ]; then
  build=$root/build-abi
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DHPS_BUILD_TESTS=OFF -DHPS_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target hpsock >/dev/null
  lib=$build/capi/libhpsock.so
fi
lib=$(readlink -f "$lib")
[ -f "$lib" ] || {
  echo "check_abi: no such library: $lib" >&2
  exit 2
}
if ! readelf -S "$lib" | grep '\.debug_info' >/dev/null; then
  echo "check_abi: $lib has no debug info; build it with -g (RelWithDebInfo)" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The values of the header's public constants (enumerators, error codes,
# option keys, macros; not the version macros). The functions take them as
# int, so abidiff alone never sees them; the baseline keeps them in an XML
# comment at its end, which abidiff ignores.
constants() {
  local hdr=$root/capi/include/hpsock.h
  {
    echo '#include <stdio.h>'
    echo '#include "hpsock.h"'
    echo 'int main(void) {'
    { grep -oE '^[[:space:]]*HPS_[A-Z0-9_]+[[:space:]]*=' "$hdr" | tr -d ' =' ;
      grep -oE 'XX\(E[A-Z0-9_]+,' "$hdr" | sed -E 's/XX\((E[A-Z0-9_]+),/HPS_\1/' ;
      grep -oE '^#define HPS_[A-Z0-9_]+ ' "$hdr" | awk '{print $2}' |
        grep -vE '^HPS_VERSION_|^HPS_EXTERN$' ; } | sort -u |
      while read -r name; do
        printf '  printf("%%s=%%lld\\n", "%s", (long long)(%s));\n' "$name" "$name"
      done
    echo '  return 0;'
    echo '}'
  } >"$tmp/constants.c"
  ${CC:-cc} -I"$root/capi/include" -o "$tmp/constants" "$tmp/constants.c"
  "$tmp/constants"
}
# --headers-dir keeps only what the public header declares (and with
# --drop-private-types, no type the header does not define).
abidw --headers-dir "$root/capi/include" --drop-private-types \
  --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed \
  --type-id-style hash --out-file "$tmp/now.abi" "$lib"
# No build paths in the dump: translation units by their path in the tree.
sed -i -E "s#path='[^']*/((capi|core)/[^']*)'#path='\1'#g" "$tmp/now.abi"
constants >"$tmp/now.const"
{
  echo '<!-- hpsock public constants (capi/abi/check_abi.sh)'
  cat "$tmp/now.const"
  echo '-->'
} >>"$tmp/now.abi"

if [ "$update" = 1 ] || [ ! -f "$baseline" ]; then
  cp "$tmp/now.abi" "$baseline"
  echo "check_abi: baseline written: ${baseline#"$root"/}"
  exit 0
fi

set +e
abidiff --no-show-locs "$baseline" "$tmp/now.abi" >"$tmp/diff.txt" 2>&1
rc=$?
set -e
sed -n '/^<!-- hpsock public constants/,/^-->/p' "$baseline" |
  grep -vE '^(<!--|-->)' >"$tmp/base.const" || true
if ! diff -u "$tmp/base.const" "$tmp/now.const" >"$tmp/const.diff"; then
  echo "check_abi: public constants differ from ${baseline#"$root"/}:" >&2
  cat "$tmp/const.diff" >&2
  [ "$rc" -ne 0 ] || rc=4
fi
if [ "$rc" -ne 0 ]; then
  # abidiff's exit status is a bit set: 1 error, 2 usage, 4 ABI change,
  # 8 incompatible ABI change.
  what="ABI change"
  [ $((rc & 8)) -ne 0 ] && what="incompatible ABI change"
  [ $((rc & 3)) -ne 0 ] && what="abidiff failed (status $rc)"
  echo "check_abi: $what against ${baseline#"$root"/}:" >&2
  cat "$tmp/diff.txt" >&2
  echo "check_abi: if the change is intended: $0 --update [LIB], and commit" \
    "capi/abi/hpsock.abi" >&2
  exit 1
fi
echo "check_abi: ABI of $(basename "$lib") matches ${baseline#"$root"/}"
