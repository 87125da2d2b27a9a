/* Path handling: lexical normalisation, joining, UTF-8 checks. Pure functions. */
#ifndef SW_PATHS_H
#define SW_PATHS_H
#include <stdbool.h>
#include <stddef.h>

#define SW_PATH_MAX 4096

/*
 * Normalises an absolute path lexically: collapses "//", drops ".", resolves
 * ".." against the preceding component. Returns false when the input is not
 * absolute or the result does not fit in out.
 */
bool path_normalize(const char *in, char *out, size_t outlen);
/* base + "/" + rel, normalised; rel may itself be absolute (base ignored). */
bool path_join(const char *base, const char *rel, char *out, size_t outlen);
/* True when `prefix` is `path` or one of its ancestor directories. */
bool path_has_prefix(const char *path, const char *prefix);
/* The last component ("/a/b" -> "b"); points into path. */
const char *path_basename(const char *path);
/* Copies the parent directory of an absolute path ("/a/b" -> "/a", "/a" -> "/"). */
bool path_dirname(const char *path, char *out, size_t outlen);
bool utf8_valid(const unsigned char *s, size_t len);
/* Whether a path fits in sockaddr_un.sun_path with its NUL (at most 107 bytes). */
bool path_fits_sun_path(const char *path);
/* FNV-1a over the bytes of a name, as the BPF side hashes last components. */
unsigned long long name_hash(const char *name, size_t len);
#endif
