#!/usr/bin/env bash
# Installs the Debian packages qvl builds against (idempotent). Without root it prints the command.
# --fuzz adds what `make fuzz` needs (clang and its libFuzzer runtime, tests/fuzz/).
set -euo pipefail
pkgs=(build-essential pkg-config
      libcjson-dev        # JSON: config.json, tokenizer.json, safetensors headers, results
      libpcre2-dev        # the tokenizer's pre-tokenizer regex (Unicode classes, lookahead)
      libutf8proc-dev     # NFC normalization, Unicode categories, case mapping
      libjpeg62-turbo-dev # JPEG decoding (the same libjpeg-turbo family PIL links)
      libpng-dev          # PNG decoding
      libwebp-dev         # WebP decoding
      libgif-dev          # GIF decoding (first frame)
      libsnappy-dev       # parquet pages (snappy)
      libzstd-dev         # parquet pages (zstd)
      libmicrohttpd-dev   # qvl serve's HTTP server (loaded at run time by `qvl serve` only)
      libopenmpi-dev openmpi-bin  # mpirun -np N qvl eval (the build works without: qvl --version says mpi: no)
      xz-utils)           # unpacks models/tokenizer/tokenizer.json.xz (make)
# qvl serve's test with the official OpenAI client (tests/serve/, `npm ci` from make test): Debian's
# nodejs and npm, unless a Node.js with its npm is installed already (another source's nodejs
# package bundles npm and conflicts with Debian's).
[ "${1:-}" = --fuzz ] && pkgs+=(clang libclang-rt-dev)  # make fuzz: clang + libclang_rt.fuzzer
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "qvl: installing missing build dependencies: ${missing[*]}" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}"; }
else
  echo "qvl: please run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
