#!/usr/bin/env bash
# Collects the real PDFs the tests use into .test-data/debian (never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.test-data/debian
mkdir -p "$out"
for pkg in docbook-xsl-doc-pdf auto-multiple-choice-doc-pdf; do
  dpkg -L "$pkg" | grep -iE '\.pdf(\.gz)?$' | while read -r f; do cp -n "$f" "$out/" 2>/dev/null || true; done
done
ls "$out" | grep -q . || { echo "test-data: no Debian PDFs found in $out" >&2; exit 1; }
