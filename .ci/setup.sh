#!/usr/bin/env bash
# Install everything hpsock's build, tests and demos need on Debian 12.
# Idempotent: apt-get runs only when a package is missing.
set -euo pipefail
PKGS=(cmake pkg-config gcc g++ make swig libuv1-dev libcmocka-dev
  python3-dev python3-venv python3-setuptools python3-wheel python3-build python3-pytest
  openjdk-17-jdk-headless junit5 maven libnetty-java
  libmaven-compiler-plugin-java libmaven-resources-plugin-java libmaven-jar-plugin-java
  libmaven-install-plugin-java libsurefire-java
  clang clang-format libclang-rt-14-dev valgrind abigail-tools libssl-dev openssl strace)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v dotnet >/dev/null 2>&1; then
  echo "setup: the .NET SDK is not installed; the C# suite will be skipped" >&2
fi
