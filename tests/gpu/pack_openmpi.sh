#!/usr/bin/env bash
# Packs this machine's Debian Open MPI (openmpi-bin, its libraries, plugins, help and config files,
# and the runtime libraries they load) into one archive for the GPU machine, which starts bare and
# reaches no package mirror. tests/gpu/mpi_scale.sh unpacks it into / without replacing any file
# already there (tar --skip-old-files), so the machine's own libraries stay as they are.
#   tests/gpu/pack_openmpi.sh .devcarry/openmpi.tar.xz
set -euo pipefail
OUT=${1:?OUT.tar.xz}
pkgs=(openmpi-bin openmpi-common libopenmpi3 libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
      libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 libibverbs1 ibverbs-providers librdmacm1 libnl-3-200
      libnl-route-3-200 libmunge2 libnuma1)
list=$(mktemp)
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || continue
    dpkg -L "$p" | while read -r f; do
        [ -f "$f" ] || [ -L "$f" ] || continue
        case $f in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*) continue ;; esac
        echo "${f#/}"
    done
done > "$list"
# Debian reaches mpirun through the alternatives system: keep its links.
for l in /usr/bin/mpirun /usr/bin/mpiexec /etc/alternatives/mpirun /etc/alternatives/mpiexec; do
    [ -L "$l" ] && echo "${l#/}" >> "$list"
done
sort -u "$list" -o "$list"
tar cJf "$OUT" -C / -T "$list"
echo "pack_openmpi: $(wc -l < "$list") files, $(du -h "$OUT" | cut -f1) in $OUT"
rm -f "$list"
