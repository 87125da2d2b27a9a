/*
 * Guard mirrors: the redirect's target (DESIGN §2 "Redirect"). A connect the
 * kernel redirects is looked up again with the client's credentials, so the
 * name it is sent to must meet the same permission checks as the original.
 * The flat guard directory is root's, mode 0700 (its names are guessable);
 * the mirror of a listener is a second hard link to its socket file at
 *
 *     <mount>/.sockwarden-redirect/<ino>/<d1>/…/<dn>/<leaf>
 *
 * where <mount> is the root of the socket's mount (an ancestor of the
 * original path, so crossed by both names), `.sockwarden-redirect` and
 * `<ino>` are root's, mode 0711 (searchable, never listable), and d1…dn
 * mirror the original's directories below the mount root: same owner,
 * group, mode and access ACL. A client that may not search /run/app may
 * not search its mirror either; the socket file is the same inode, so its
 * own write check is the same.
 */
#ifndef SW_GUARD_MIRROR_H
#define SW_GUARD_MIRROR_H
#include <stddef.h>
#include <stdint.h>

#include "guard.h"

#define GUARD_MIRROR_DIR_NAME ".sockwarden-redirect"

/*
 * Makes, or brings up to date, the mirror of the guard g of the listener
 * (dev, ino) at path (as the guard's namespace names it), and writes the
 * mirror's path, as that namespace names it, into target. A mirror built
 * anew is built inside a root-only directory and swapped in whole, so no
 * one can put a name of theirs in it; one that exists has its directories'
 * owners and modes re-copied in place and stays usable throughout.
 * Returns 0, or -errno with why set (too_long, path_gone, not_under_mount,
 * symlink_in_path, read_only, untrusted_dir, …).
 */
int guard_mirror_make(const struct guard_ref *g, const char *path, uint64_t dev, uint64_t ino,
		      char *target, size_t len, const char **why);
/* Removes the mirror of the listener with socket inode ino. */
void guard_mirror_remove(const struct guard_ref *g, uint64_t ino);
/* Removes every tree of the mount's mirror directory whose listener keep()
 * does not accept: a closed listener's, whichever run or agent made it.
 * Returns how many it removed. */
size_t guard_mirror_prune(struct guard_dir *d, guard_keep_fn keep, void *ctx);
/* Removes a mount's whole mirror directory (its guard directory is going). */
void guard_mirror_dir_remove(struct guard_dir *d);
#endif
