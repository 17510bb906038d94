#!/usr/bin/env bash
# Copies the Debian runtime libraries a qvl binary loads into DIR/lib (and libmicrohttpd, which
# `qvl serve` opens with dlopen, with the libraries it loads into DIR/lib/mhd), for the GPU machine:
# it starts bare and reaches no package mirror. glibc, libstdc++/libgcc and the CUDA libraries are
# left out (the GPU machine has them). The GPU scripts put DIR/lib:DIR/lib/mhd on LD_LIBRARY_PATH.
#   tests/gpu/pack_runtime_libs.sh BINARY DIR        (e.g. build/qvl .devcarry)
set -euo pipefail
BIN=${1:?BINARY}; DIR=${2:?DIR}
mkdir -p "$DIR/lib/mhd"
keep() {   # ldd lines of $1 -> the paths to copy
    ldd "$1" | awk '$3 ~ /^\// {print $3}' |
        grep -v -E '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|/usr/local/cuda/' || true
}
n=0
for f in $(keep "$BIN"); do cp -L "$f" "$DIR/lib/" && n=$((n + 1)); done
mhd=$(ldconfig -p | awk '/libmicrohttpd\.so\.12 .*x86-64/ {print $NF; exit}')
if [ -n "$mhd" ]; then
    cp -L "$mhd" "$DIR/lib/mhd/"
    for f in $(keep "$mhd"); do [ -f "$DIR/lib/$(basename "$f")" ] || cp -L "$f" "$DIR/lib/mhd/"; done
else
    echo "pack_runtime_libs: libmicrohttpd.so.12 not installed: qvl serve will not start there" >&2
fi
echo "pack_runtime_libs: $n libraries in $DIR/lib, $(ls "$DIR/lib/mhd" | wc -l) in $DIR/lib/mhd ($(du -sh "$DIR/lib" | cut -f1))"
