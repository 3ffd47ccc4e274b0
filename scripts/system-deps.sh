#!/usr/bin/env bash
# Debian packages docrag's tests need: poppler (the pdf2image renderer), Tesseract OCR with English,
# French and Japanese data (the OCR fallback), Chromium (the web UI test) and real PDFs nobody here
# wrote (Debian documentation packages). Idempotent; skips apt when all are present.
set -euo pipefail
pkgs=(poppler-utils docbook-xsl-doc-pdf auto-multiple-choice-doc-pdf chromium  # chromium: the web UI test
      tesseract-ocr tesseract-ocr-eng tesseract-ocr-fra tesseract-ocr-jpn)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
