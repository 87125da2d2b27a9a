#include "paths.h"

#include <string.h>
#include <sys/un.h>

bool path_normalize(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;

	if (!in || in[0] != '/' || outlen < 2)
		return false;
	out[o++] = '/';
	while (*p) {
		const char *seg;
		size_t len;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		seg = p;
		while (*p && *p != '/')
			p++;
		len = (size_t)(p - seg);
		if (len == 1 && seg[0] == '.')
			continue;
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			/* back up to the previous '/', never above the root */
			while (o > 1 && out[o - 1] != '/')
				o--;
			if (o > 1)
				o--;
			continue;
		}
		if (o > 1) {
			if (o + 1 >= outlen)
				return false;
			out[o++] = '/';
		}
		if (o + len >= outlen)
			return false;
		memcpy(out + o, seg, len);
		o += len;
	}
	out[o] = 0;
	return true;
}

bool path_join(const char *base, const char *rel, char *out, size_t outlen)
{
	char tmp[2 * SW_PATH_MAX + 2];
	size_t bl, rl;

	if (rel[0] == '/')
		return path_normalize(rel, out, outlen);
	bl = strlen(base);
	rl = strlen(rel);
	if (bl + rl + 2 > sizeof(tmp))
		return false;
	memcpy(tmp, base, bl);
	tmp[bl] = '/';
	memcpy(tmp + bl + 1, rel, rl + 1);
	return path_normalize(tmp, out, outlen);
}

bool path_has_prefix(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strcmp(prefix, "/") == 0)
		return path[0] == '/';
	if (strncmp(path, prefix, n) != 0)
		return false;
	return path[n] == 0 || path[n] == '/';
}

const char *path_basename(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

bool path_dirname(const char *path, char *out, size_t outlen)
{
	const char *s = strrchr(path, '/');
	size_t n;

	if (!s)
		return false;
	n = s == path ? 1 : (size_t)(s - path);
	if (n >= outlen)
		return false;
	memcpy(out, path, n);
	out[n] = 0;
	return true;
}

bool utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned int cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		/* reject overlong forms, surrogates and out-of-range code points */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
		    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

bool path_fits_sun_path(const char *path)
{
	return strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path);
}

unsigned long long name_hash(const char *name, size_t len)
{
	unsigned long long h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 0x100000001b3ULL;
	return h;
}
