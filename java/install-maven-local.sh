#!/bin/sh
# install-maven-local.sh - put the hpsock JAR into a local Maven repository
# by hand, in the repository layout, without any Maven plugin:
#
#   java/install-maven-local.sh build/java/hpsock.jar build/java/pom.xml [REPO]
#
# REPO defaults to ~/.m2/repository. Writes
#   REPO/org/hpsock/hpsock/VERSION/hpsock-VERSION.jar
#   REPO/org/hpsock/hpsock/VERSION/hpsock-VERSION.pom
#   REPO/org/hpsock/hpsock/maven-metadata-local.xml
# which is what "mvn install:install-file" writes (less its bookkeeping).
set -eu
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 JAR POM [REPO]" >&2
  exit 64
fi
jar=$1
pom=$2
repo=${3:-$HOME/.m2/repository}
# The first <version> after </artifactId> is the project's (the POM has no parent).
version=$(sed -n '/<\/artifactId>/,$ s:.*<version>\([^<]*\)</version>.*:\1:p' "$pom" | head -n 1)
if [ -z "$version" ]; then
  echo "$0: no <version> in $pom" >&2
  exit 1
fi
dir=$repo/org/hpsock/hpsock
mkdir -p "$dir/$version"
cp "$jar" "$dir/$version/hpsock-$version.jar"
cp "$pom" "$dir/$version/hpsock-$version.pom"
cat > "$dir/maven-metadata-local.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<metadata>
  <groupId>org.hpsock</groupId>
  <artifactId>hpsock</artifactId>
  <versioning>
    <release>$version</release>
    <versions>
      <version>$version</version>
    </versions>
    <lastUpdated>$(date -u +%Y%m%d%H%M%S)</lastUpdated>
  </versioning>
</metadata>
XML
echo "installed org.hpsock:hpsock:$version into $repo"
