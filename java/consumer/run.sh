#!/bin/sh
# consumer/run.sh - the CTest test java_maven_consumer: install the built
# JAR into a fresh local Maven repository and build java/consumer against it
# offline, then run it.
#
#   run.sh MVN JAVA JAR POM VERSION CONSUMER_DIR INSTALL_SCRIPT WORK_DIR
#
# Maven offline sees only what is in the local repository, so the repository
# is a symlink copy of Debian's /usr/share/maven-repo (its plugins) plus our
# artifact, installed with the documented "mvn install:install-file" when
# Debian's install plugin is there (libmaven-install-plugin-java), else laid
# out by install-maven-local.sh. Exit 77 (skipped) when Debian's Maven
# plugins needed to build a jar project are missing.
set -eu
mvn=$1 java=$2 jar=$3 pom=$4 version=$5 src=$6 install=$7 work=$8
debian=/usr/share/maven-repo
for p in maven-compiler-plugin maven-resources-plugin maven-jar-plugin maven-surefire-plugin; do
  if [ ! -d "$debian/org/apache/maven/plugins/$p" ]; then
    echo "SKIP: $debian has no $p (apt-get install lib${p#maven-}-java or the like)"
    exit 77
  fi
done
rm -rf "$work"
mkdir -p "$work"
mvnq() { repo=$1; shift; "$mvn" -o -B -q -Dstyle.color=never -Dmaven.repo.local="$repo" "$@"; }

# build_and_run REPO: build java/consumer offline against REPO, run it.
build_and_run() {
  repo=$1
  installed=$repo/org/hpsock/hpsock/$version/hpsock-$version.jar
  test -f "$installed" || { echo "FAIL: $installed missing"; exit 1; }
  rm -rf "$work/consumer"
  cp -r "$src" "$work/consumer"
  rm -f "$work/consumer/run.sh"
  (cd "$work/consumer" && mvnq "$repo" -Dhpsock.version="$version" package)
  built=$work/consumer/target/hpsock-consumer-1.0.jar
  test -f "$built" || { echo "FAIL: $built missing"; exit 1; }
  out=$("$java" -cp "$built:$installed" org.hpsock.consumer.Main)
  echo "$out"
  test "$out" = "consumer ok $version" || { echo "FAIL: unexpected output"; exit 1; }
}

# 1. The documented plugin command, when Debian has the install plugin.
if [ -d "$debian/org/apache/maven/plugins/maven-install-plugin" ]; then
  echo "== mvn install:install-file, then mvn package (java/consumer)"
  mkdir -p "$work/repo-plugin"
  cp -rs "$debian/." "$work/repo-plugin/"
  mvnq "$work/repo-plugin" install:install-file -Dfile="$jar" -DpomFile="$pom"
  build_and_run "$work/repo-plugin"
else
  echo "== (no maven-install-plugin in $debian: plugin path not tested)"
fi

# 2. The hand-made repository layout (install-maven-local.sh).
echo "== install-maven-local.sh, then mvn package (java/consumer)"
mkdir -p "$work/repo-script"
cp -rs "$debian/." "$work/repo-script/"
sh "$install" "$jar" "$pom" "$work/repo-script"
build_and_run "$work/repo-script"
echo "PASS"
