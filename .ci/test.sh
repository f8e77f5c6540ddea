#!/usr/bin/env bash
# Run every test suite: C (cmocka), Python (pytest on the installed wheel),
# Java (JUnit 5 on the JAR) and C# (xunit on the .nupkg), all through CTest.
#   bash .ci/test.sh            # build dir: build/
#   BUILD=dir bash .ci/test.sh  # another build dir
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
BUILD=${BUILD:-build}
# A binding is built when its folder has a build; C# also needs the SDK.
flag() { [ -f "$1/CMakeLists.txt" ] && echo ON || echo OFF; }
WITH_CSHARP=$(flag csharp)
command -v dotnet >/dev/null 2>&1 || WITH_CSHARP=OFF
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHPS_WERROR=ON \
  -DHPS_BUILD_PYTHON="$(flag python)" -DHPS_BUILD_JAVA="$(flag java)" \
  -DHPS_BUILD_CSHARP="$WITH_CSHARP" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure -j1 "$@"
