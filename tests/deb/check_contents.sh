#!/bin/sh
# The built packages hold what DESIGN §6 promises, in the right package:
#   tests/deb/check_contents.sh DEB_DIR VERSION ARCH
# Checks the file lists (dpkg-deb -c), the conffiles (the control archive),
# the unit's ExecStart and ExecReload, the library's SONAME and its package's
# Multi-Arch, the pkg-config file's paths and the maintainer scripts.
set -eu
dir=$1 version=$2 arch=$3
multiarch=$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
failures=0
fail() { echo "check_contents: $*" >&2; failures=$((failures + 1)); }

deb() { echo "$dir/${1}_${version}_${arch}.deb"; }
for p in sockwarden libsockwarden0 libsockwarden-dev; do
	[ -f "$(deb "$p")" ] || { echo "check_contents: $(deb "$p") is missing" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# has PACKAGE PATH...: each path is in the package (file, link or directory)
has() {
	p=$1; shift
	dpkg-deb -c "$(deb "$p")" | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||' > "$tmp/list"
	for f in "$@"; do
		grep -qxF "$f" "$tmp/list" || fail "$p lacks $f"
	done
}
has sockwarden /usr/sbin/sockwarden /lib/systemd/system/sockwarden.service \
	/etc/sockwarden/sockwarden.conf /usr/lib/tmpfiles.d/sockwarden.conf \
	/usr/share/man/man8/sockwarden.8.gz /usr/share/man/man5/sockwarden.conf.5.gz \
	/usr/share/doc/sockwarden/copyright
has libsockwarden0 "/usr/lib/$multiarch/libsockwarden.so.0" \
	"/usr/lib/$multiarch/libsockwarden.so.$version"
has libsockwarden-dev /usr/include/sockwarden.h "/usr/lib/$multiarch/libsockwarden.so" \
	"/usr/lib/$multiarch/libsockwarden.a" "/usr/lib/$multiarch/pkgconfig/sockwarden.pc" \
	/usr/share/man/man3/libsockwarden.3.gz

# Nothing of the library's in the agent's package and the reverse.
dpkg-deb -c "$(deb sockwarden)" | grep -q 'libsockwarden' && fail "sockwarden ships library files"
dpkg-deb -c "$(deb libsockwarden0)" | grep -qE '\.(a|h|pc)$|/libsockwarden\.so$' &&
	fail "libsockwarden0 ships development files"

# The config is the one conffile.
dpkg-deb --ctrl-tarfile "$(deb sockwarden)" | tar -x -C "$tmp" ./conffiles ./postinst ./prerm ./postrm
[ "$(cat "$tmp/conffiles")" = /etc/sockwarden/sockwarden.conf ] ||
	fail "conffiles are '$(cat "$tmp/conffiles")', not /etc/sockwarden/sockwarden.conf"

# dh_installsystemd's snippets: enable + start on install, restart on upgrade,
# stop on remove; dh_installtmpfiles applies the snippet on install.
grep -q 'deb-systemd-helper.*enable' "$tmp/postinst" || fail "postinst does not enable the unit"
grep -q '_dh_action=restart' "$tmp/postinst" &&
	grep -q "deb-systemd-invoke \$_dh_action 'sockwarden.service'" "$tmp/postinst" ||
	fail "postinst does not start the unit on install and restart it on upgrade"
grep -q 'systemd-tmpfiles .*--create sockwarden.conf' "$tmp/postinst" ||
	fail "postinst does not apply the tmpfiles.d snippet"
grep -q "deb-systemd-invoke stop 'sockwarden.service'" "$tmp/prerm" || fail "prerm does not stop the unit"
grep -q 'rm -rf /var/log/sockwarden' "$tmp/postrm" || fail "postrm purge keeps /var/log/sockwarden"

# The unit runs the packaged binary and reloads with SIGHUP.
dpkg-deb --fsys-tarfile "$(deb sockwarden)" | tar -x -C "$tmp" ./lib/systemd/system/sockwarden.service \
	./usr/lib/tmpfiles.d/sockwarden.conf
unit=$tmp/lib/systemd/system/sockwarden.service
grep -qx 'ExecStart=/usr/sbin/sockwarden run --config /etc/sockwarden/sockwarden.conf .*' "$unit" ||
	fail "the unit's ExecStart is not /usr/sbin/sockwarden: $(grep ExecStart= "$unit")"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "the unit has no ExecReload by SIGHUP"
grep -q '/usr/local' "$unit" && fail "the unit names /usr/local"
grep -qx 'x /\*/.sockwarden-guard' "$tmp/usr/lib/tmpfiles.d/sockwarden.conf" ||
	fail "the tmpfiles.d snippet does not exclude the guard directories"

# The library: its SONAME names the package; Multi-Arch: same.
dpkg-deb --fsys-tarfile "$(deb libsockwarden0)" | tar -x -C "$tmp"
soname=$(readelf -d "$tmp/usr/lib/$multiarch/libsockwarden.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libsockwarden.so.0 ] || fail "SONAME is '$soname', not libsockwarden.so.0"
for p in libsockwarden0 libsockwarden-dev; do
	[ "$(dpkg-deb -f "$(deb "$p")" Multi-Arch)" = same ] || fail "$p is not Multi-Arch: same"
done
dpkg-deb -f "$(deb libsockwarden-dev)" Depends | grep -qF "libsockwarden0 (= $version)" ||
	fail "libsockwarden-dev does not depend on libsockwarden0 (= $version)"
# A server linked against the library depends on libsockwarden0 (>= 0.1.0),
# from the symbols file.
dpkg-deb --ctrl-tarfile "$(deb libsockwarden0)" | tar -x -C "$tmp" ./symbols
grep -q '^libsockwarden.so.0 libsockwarden0' "$tmp/symbols" || fail "libsockwarden0 ships no symbols file"

# The pkg-config file names the installed paths, never the build tree.
dpkg-deb --fsys-tarfile "$(deb libsockwarden-dev)" | tar -x -C "$tmp" "./usr/lib/$multiarch/pkgconfig/sockwarden.pc"
pc=$tmp/usr/lib/$multiarch/pkgconfig/sockwarden.pc
grep -qx "libdir=/usr/lib/$multiarch" "$pc" || fail "sockwarden.pc: $(grep libdir= "$pc")"
grep -qx 'includedir=/usr/include' "$pc" || fail "sockwarden.pc: $(grep includedir= "$pc")"
grep -qx "Version: $version" "$pc" || fail "sockwarden.pc: $(grep Version: "$pc")"

if [ "$failures" -ne 0 ]; then
	echo "check_contents: $failures failures" >&2
	exit 1
fi
echo "deb contents: ok (3 packages, conffile, unit, tmpfiles.d, SONAME, symbols, pkg-config)"
