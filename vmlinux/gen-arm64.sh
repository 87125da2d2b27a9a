#!/usr/bin/env bash
# gen-arm64.sh - regenerate vmlinux/arm64/vmlinux.h from the real BTF of
# Debian 12 (bookworm)'s arm64 kernel, on any host architecture.
#
# Usage:
#   vmlinux/gen-arm64.sh [VERSION]
#
#   VERSION (optional) selects the kernel package; any of:
#     (none)                      the current linux-image-arm64 metapackage's kernel
#     6.1.0-56                    a kernel ABI -> linux-image-6.1.0-56-arm64-unsigned
#     6.1.192-2                   a Debian package version of linux-image-arm64
#     linux-image-6.1.0-56-arm64-unsigned   an exact package name
#   Environment:
#     KFLAVOUR  kernel flavour (default: arm64; also cloud-arm64, rt-arm64)
#     OUT       output file (default: <this dir>/arm64/vmlinux.h)
#
# Needs: apt-get (Debian's archive reachable), dpkg-deb, python3, bpftool
# (Debian's `bpftool` package, 7.x, reads raw BTF files). Run as root, as
# apt-get and its locks/sandbox expect that.
#
# Nothing on the host is changed: the arm64 package lists and the .deb are
# fetched into a private temporary apt state (own lists/cache dirs, empty
# dpkg status), so no `dpkg --add-architecture arm64` is needed and nothing
# is left behind, even if the script fails half-way.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
want="${1:-}"
flavour="${KFLAVOUR:-arm64}"
out="${OUT:-$here/arm64/vmlinux.h}"

# bpftool does the actual BTF -> C conversion. Install it if we can.
if ! command -v bpftool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q bpftool >/dev/null
    else
        echo "error: bpftool not found (apt-get install bpftool)" >&2
        exit 1
    fi
fi
command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }

# Everything happens in a temp dir that is always removed.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"

# A private apt configuration that sees only the arm64 indexes of the host's
# configured Debian sources. Dir::State::status=/dev/null keeps the host's
# installed (amd64) package set out of the resolver; we only download.
# The temp dir is 0700, so apt's unprivileged _apt sandbox user could not
# write into it: run the downloads as root instead.
apt_opts=(
    -q
    -o APT::Architecture=arm64
    -o APT::Architectures::=arm64
    -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache"
    -o Dir::State::status=/dev/null
    -o APT::Sandbox::User=root
)
echo ">> fetching arm64 package indexes (private apt state in $tmp)" >&2
apt-get "${apt_opts[@]}" update >"$tmp/update.log" 2>&1 || {
    cat "$tmp/update.log" >&2; exit 1; }

# Resolve the argument to an exact package name. The -unsigned package holds
# the same kernel Image as the signed one, minus the Secure Boot signature.
abi_of_meta() {   # $1 = optional version of linux-image-$flavour
    # The metapackage depends on the ABI-named image package; read the ABI
    # from that dependency. --no-all-versions: only the candidate, or only
    # the version asked for with pkg=ver.
    local spec="linux-image-$flavour${1:+=$1}" dep
    dep="$(apt-cache "${apt_opts[@]}" show --no-all-versions "$spec" 2>/dev/null |
        sed -n 's/^Depends:.*linux-image-\([0-9][0-9.]*-[0-9]*\)-.*/\1/p' | head -n1 || true)"
    [ -n "$dep" ] || { echo "error: cannot resolve $spec" >&2; exit 1; }
    echo "$dep"
}
case "$want" in
    "")                 pkg="linux-image-$(abi_of_meta "")-$flavour-unsigned" ;;
    linux-image-*)      pkg="$want" ;;
    [0-9]*.[0-9]*.0-[0-9]*) pkg="linux-image-$want-$flavour-unsigned" ;;  # ABI, e.g. 6.1.0-56
    *)                  pkg="linux-image-$(abi_of_meta "$want")-$flavour-unsigned" ;;
esac

echo ">> downloading $pkg:arm64" >&2
(cd "$tmp" && apt-get "${apt_opts[@]}" download "$pkg:arm64" >"$tmp/download.log" 2>&1) || {
    cat "$tmp/download.log" >&2; exit 1; }
deb="$(ls "$tmp"/*.deb)"
pkgver="$(dpkg-deb -f "$deb" Version)"
debsha="$(sha256sum "$deb" | cut -d' ' -f1)"

# Unpack without installing (an arm64 kernel package must not be installed
# here, and dpkg would refuse it without the foreign architecture anyway).
dpkg-deb -x "$deb" "$tmp/root"
vmlinuz="$(ls "$tmp"/root/boot/vmlinuz-*)"
echo ">> kernel image: $(file -b "$vmlinuz")" >&2

# Debian's arm64 vmlinuz is not an ELF (there is no vmlinux in the package),
# so `bpftool btf dump file` cannot read it. But the kernel Image is a flat
# copy of the loaded segments, and .BTF is one of them, so the BTF blob is in
# it verbatim. Find it, validate it, and cut it out as a raw BTF file (which
# bpftool accepts). The image may also be wrapped: plain gzip (older
# packaging) or EFI zboot ("MZ" + "zimg" header, CONFIG_EFI_ZBOOT) whose
# payload is compressed; unwrap those first.
python3 - "$vmlinuz" "$tmp/vmlinux.btf" <<'PY'
import bz2, gzip, lzma, shutil, struct, subprocess, sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()

def external(cmd, blob):
    # zstd/lz4 have no stdlib module; use the CLI if it is installed.
    if shutil.which(cmd[0]) is None:
        sys.exit(f"error: need `{cmd[0]}` to decompress this image (apt-get install {cmd[0]})")
    return subprocess.run(cmd, input=blob, stdout=subprocess.PIPE, check=True).stdout

def decompress(kind, blob):
    if kind == "gzip":  return gzip.decompress(blob)
    if kind in ("xzkern", "xz", "lzma"): return lzma.decompress(blob)
    if kind == "bzip2": return bz2.decompress(blob)
    if kind in ("zstd22", "zstd"): return external(["zstd", "-dc"], blob)
    if kind == "lz4":   return external(["lz4", "-dc"], blob)
    sys.exit(f"error: unsupported compression {kind!r}")

# EFI zboot header (drivers/firmware/efi/libstub/zboot-header.S):
#   0 "MZ", 4 "zimg", 8 u32 payload offset, 12 u32 payload size,
#   24 NUL-padded compression name ("gzip", "zstd22", "xzkern", ...)
if data[:2] == b"MZ" and data[4:8] == b"zimg":
    off, size = struct.unpack_from("<II", data, 8)
    kind = data[24:32].split(b"\0")[0].decode()
    print(f">> EFI zboot image, {kind} payload at {off:#x} ({size} bytes)", file=sys.stderr)
    data = decompress(kind, data[off:off + size])
elif data[:2] == b"\x1f\x8b":
    print(">> gzip-compressed Image", file=sys.stderr)
    data = gzip.decompress(data)

# struct btf_header: u16 magic 0xeb9f, u8 version 1, u8 flags 0,
# u32 hdr_len 24, u32 type_off, type_len, str_off, str_len.
pat = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"
best, i = None, data.find(pat)
while i >= 0:
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, i + 8)
    total = 24 + str_off + str_len
    s = i + 24 + str_off
    if (type_off == 0 and str_off == type_len and type_len >= 1 << 16
            and 0 < str_len < 1 << 26 and i + total <= len(data)
            and data[s] == 0 and data[s + str_len - 1] == 0):
        if best is None or total > best[1]:
            best = (i, total)
    i = data.find(pat, i + 1)
if best is None:
    sys.exit("error: no valid BTF header found in the kernel image")
off, total = best
open(dst, "wb").write(data[off:off + total])
print(f">> BTF blob at {off:#x}, {total} bytes", file=sys.stderr)
PY

# Convert the raw BTF to C. Write to a temp file first so a failure never
# leaves a truncated header in the tree.
bpftool btf dump file "$tmp/vmlinux.btf" format c >"$tmp/vmlinux.h.body"
{
    echo "/* vmlinux.h for arm64, generated by vmlinux/gen-arm64.sh from the BTF of"
    echo " * Debian 12 package $pkg (arm64) version $pkgver"
    echo " * (.deb sha256 $debsha)."
    echo " * Regenerate with: vmlinux/gen-arm64.sh${want:+ $want}"
    echo " * Do not edit by hand. */"
    cat "$tmp/vmlinux.h.body"
} >"$tmp/vmlinux.h"
mkdir -p "$(dirname "$out")"
mv "$tmp/vmlinux.h" "$out"
echo ">> wrote $out ($(wc -l <"$out") lines) from $pkg $pkgver" >&2
