#!/bin/sh
# The tmpfiles.d snippet keeps the guard directories through a real
# `systemd-tmpfiles --clean`, and only them:
#   tests/deb/check_tmpfiles.sh dist/tmpfiles.d/sockwarden.conf
# In a scratch root (--root), age rules over /tmp, /var/tmp, /dev/shm, /run,
# /run/app and /run/user/1000 (mount points of each depth the snippet covers)
# clean files older than a day: with the snippet, the old files beside the
# guard directories go and the guard and redirect directories with their
# contents stay; without it, they go too (so the check can fail).
set -eu
snippet=$(realpath "$1")
if ! command -v systemd-tmpfiles >/dev/null; then
	[ "${CI:-}" = true ] && { echo "check_tmpfiles: systemd-tmpfiles is missing" >&2; exit 1; }
	echo "check_tmpfiles: skipped (no systemd-tmpfiles)"; exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mounts="/ /tmp /var/tmp /dev/shm /run /run/app /run/user/1000"

populate() {
	for m in $mounts; do
		m=${m%/}
		mkdir -p "$root$m/.sockwarden-guard" "$root$m/.sockwarden-redirect/7" "$root$m/lost+old"
		touch "$root$m/.sockwarden-guard/2049-1234" "$root$m/.sockwarden-redirect/7/app.sock" \
			"$root$m/lost+old/stale" "$root$m/stale"
	done
	# tmpfiles ages by atime, mtime and ctime unless told: the rules below
	# age by mtime, which touch can set back.
	find "$root" -exec touch -h -d '2020-01-01' {} +
	mkdir -p "$root/etc/tmpfiles.d"
	: > "$root/etc/tmpfiles.d/age.conf"
	for m in $mounts; do
		[ "$m" = / ] && continue
		echo "d $m - - - m:1d" >> "$root/etc/tmpfiles.d/age.conf"
	done
}

populate
cp "$snippet" "$root/etc/tmpfiles.d/sockwarden.conf"
systemd-tmpfiles --root="$root" --clean
bad=0
for m in $mounts; do
	m=${m%/}
	for f in .sockwarden-guard/2049-1234 .sockwarden-redirect/7/app.sock; do
		[ -e "$root$m/$f" ] || { echo "check_tmpfiles: the cleaner removed $m/$f" >&2; bad=1; }
	done
	if [ "$m" != "" ] && [ -e "$root$m/stale" ]; then
		echo "check_tmpfiles: the cleaner kept $m/stale: the age rules did not run" >&2; bad=1
	fi
done
[ $bad = 0 ] || exit 1

# Without the snippet the same clean removes the guard links: the check above
# would have caught a snippet that excludes nothing.
rm -rf "$root"; mkdir -p "$root"
populate
systemd-tmpfiles --root="$root" --clean
if [ -e "$root/run/app/.sockwarden-guard/2049-1234" ]; then
	echo "check_tmpfiles: without the snippet the guard link survived too: the test proves nothing" >&2
	exit 1
fi
echo "tmpfiles.d: ok (guard and redirect directories kept at $(echo $mounts | wc -w) mount roots)"
