/*
 * The control protocol's JSON, and nothing more (docs/protocol.md): flat
 * objects whose values are strings or integers. The decoder is strict on
 * purpose: anything that is not exactly one of the agent's four messages is
 * rejected, so two implementations of the protocol cannot drift apart.
 */
#include "codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ----- UTF-8 and paths ----- */

/* The length of the valid UTF-8 sequence at s (at most avail bytes), or 0:
 * overlong forms, surrogates and code points above U+10FFFF are invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned c = s[0];
	uint32_t cp, min;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, cp = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int sw_codec_check_path(const char *path)
{
	size_t len, i, n;

	if (!path || path[0] != '/')
		return -EINVAL;
	len = strnlen(path, SW_SOCKET_PATH_MAX + 1);
	if (len > SW_SOCKET_PATH_MAX)
		return -ENAMETOOLONG;
	/* normalised, as the agent wants it: every component non-empty and
	 * neither "." nor "..", no trailing '/' (so "/" itself is refused) */
	for (i = 0; i < len;) {
		size_t j = i + 1, seg;

		while (j < len && path[j] != '/')
			j++;
		seg = j - i - 1;
		if (seg == 0 || (seg == 1 && path[i + 1] == '.') ||
		    (seg == 2 && path[i + 1] == '.' && path[i + 2] == '.'))
			return -EINVAL;
		i = j;
	}
	/* JSON strings are UTF-8: another path cannot be sent */
	for (i = 0; i < len; i += n) {
		n = utf8_seq_len((const unsigned char *)path + i, len - i);
		if (!n)
			return -EINVAL;
	}
	return 0;
}

/* ----- decoder ----- */

struct reader {
	const unsigned char *p, *end;
};

static void skip_ws(struct reader *r)
{
	while (r->p < r->end &&
	       (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static bool eat(struct reader *r, unsigned char c)
{
	if (r->p < r->end && *r->p == c) {
		r->p++;
		return true;
	}
	return false;
}

static bool parse_hex4(struct reader *r, uint32_t *v)
{
	*v = 0;
	if (r->end - r->p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		unsigned c = *r->p++;

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			*v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			*v |= c - 'A' + 10;
		else
			return false;
	}
	return true;
}

static size_t utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A JSON string into out (cap bytes including the NUL), escapes resolved.
 * \u0000 is refused: no C string can hold it, and no path contains it. */
static bool parse_string(struct reader *r, char *out, size_t cap)
{
	size_t o = 0;

	if (!eat(r, '"'))
		return false;
	for (;;) {
		char tmp[4];
		const char *src = tmp;
		size_t n;

		if (r->p >= r->end)
			return false;
		unsigned c = *r->p;

		if (c == '"') {
			r->p++;
			break;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			uint32_t cp, lo;

			r->p++;
			if (r->p >= r->end)
				return false;
			switch (*r->p++) {
			case '"': tmp[0] = '"'; n = 1; break;
			case '\\': tmp[0] = '\\'; n = 1; break;
			case '/': tmp[0] = '/'; n = 1; break;
			case 'b': tmp[0] = '\b'; n = 1; break;
			case 'f': tmp[0] = '\f'; n = 1; break;
			case 'n': tmp[0] = '\n'; n = 1; break;
			case 'r': tmp[0] = '\r'; n = 1; break;
			case 't': tmp[0] = '\t'; n = 1; break;
			case 'u':
				if (!parse_hex4(r, &cp) || cp == 0 ||
				    (cp >= 0xdc00 && cp <= 0xdfff))
					return false;
				if (cp >= 0xd800 && cp <= 0xdbff) {
					/* a high surrogate: its low half must follow */
					if (!eat(r, '\\') || !eat(r, 'u') || !parse_hex4(r, &lo) ||
					    lo < 0xdc00 || lo > 0xdfff)
						return false;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				}
				n = utf8_put(cp, tmp);
				break;
			default:
				return false;
			}
		} else {
			n = utf8_seq_len(r->p, (size_t)(r->end - r->p));
			if (!n)
				return false;
			src = (const char *)r->p;
			r->p += n;
		}
		if (o + n >= cap)
			return false;
		memcpy(out + o, src, n);
		o += n;
	}
	out[o] = 0;
	return true;
}

/* A JSON number that is an integer (no fraction, no exponent), in int64. */
static bool parse_int(struct reader *r, int64_t *v)
{
	bool neg = eat(r, '-');
	uint64_t u = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;

	if (r->p >= r->end || *r->p < '0' || *r->p > '9')
		return false;
	if (*r->p == '0') {
		r->p++;
	} else {
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
			unsigned d = *r->p++ - '0';

			if (u > (lim - d) / 10)
				return false;
			u = u * 10 + d;
		}
	}
	if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E' ||
			      (*r->p >= '0' && *r->p <= '9')))
		return false; /* a fraction, an exponent, or a leading zero */
	*v = neg ? (int64_t)(0 - u) : (int64_t)u;
	return true;
}

enum { K_OP = 1, K_PATH = 2, K_REASON = 4, K_SEQ = 8 };

int sw_codec_decode(const char *buf, size_t len, struct sw_codec_msg *m)
{
	struct reader r;
	unsigned have = 0, allowed, required;
	char op[16] = "";
	int64_t seq = 0;

	m->op = 0;
	m->path[0] = m->reason[0] = 0;
	m->seq = 0;
	if (len > SW_MSG_MAX)
		return -EMSGSIZE;
	if (!buf)
		return -EBADMSG;
	r = (struct reader){ (const unsigned char *)buf, (const unsigned char *)buf + len };
	skip_ws(&r);
	if (!eat(&r, '{'))
		return -EBADMSG;
	skip_ws(&r);
	if (!eat(&r, '}')) {
		for (;;) {
			char key[16];
			unsigned k;
			bool ok;

			if (!parse_string(&r, key, sizeof(key)))
				return -EBADMSG;
			skip_ws(&r);
			if (!eat(&r, ':'))
				return -EBADMSG;
			skip_ws(&r);
			if (strcmp(key, "op") == 0)
				k = K_OP, ok = parse_string(&r, op, sizeof(op));
			else if (strcmp(key, "path") == 0)
				k = K_PATH, ok = parse_string(&r, m->path, sizeof(m->path));
			else if (strcmp(key, "reason") == 0)
				k = K_REASON, ok = parse_string(&r, m->reason, sizeof(m->reason));
			else if (strcmp(key, "seq") == 0)
				k = K_SEQ, ok = parse_int(&r, &seq);
			else
				return -EBADMSG; /* unknown key */
			if (!ok || (have & k))
				return -EBADMSG; /* wrong type, bad value, duplicate */
			have |= k;
			skip_ws(&r);
			if (eat(&r, ','))
				skip_ws(&r);
			else if (eat(&r, '}'))
				break;
			else
				return -EBADMSG;
		}
	}
	skip_ws(&r);
	if (r.p != r.end)
		return -EBADMSG; /* trailing bytes */

	if (strcmp(op, "registered") == 0) {
		m->op = SW_OP_REGISTERED;
		allowed = required = K_OP | K_PATH;
	} else if (strcmp(op, "unregistered") == 0) {
		m->op = SW_OP_UNREGISTERED;
		allowed = required = K_OP | K_PATH;
	} else if (strcmp(op, "rebind") == 0) {
		m->op = SW_OP_REBIND;
		allowed = required = K_OP | K_PATH | K_SEQ;
	} else if (strcmp(op, "error") == 0) {
		/* the agent leaves the path out when it has none to name */
		m->op = SW_OP_ERROR;
		allowed = K_OP | K_PATH | K_REASON;
		required = K_OP | K_REASON;
	} else {
		m->op = 0;
		return -EBADMSG; /* no op, or not one the agent sends */
	}
	if ((have & ~allowed) || (have & required) != required)
		return -EBADMSG;
	if ((have & K_PATH) && sw_codec_check_path(m->path) != 0)
		return -EBADMSG;
	if (have & K_SEQ) {
		if (seq <= 0)
			return -EBADMSG;
		m->seq = (uint64_t)seq;
	}
	return 0;
}

/* ----- encoder ----- */

struct writer {
	char *buf;
	size_t cap, len;
	bool full;
};

static void put(struct writer *w, const char *s, size_t n)
{
	if (w->full || w->len + n >= w->cap) {
		w->full = true;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = 0;
}

static void put_str(struct writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* A JSON string; s is valid UTF-8 (sw_codec_check_path), so only '"', '\\'
 * and control characters need escapes. */
static void put_json_string(struct writer *w, const char *s)
{
	put(w, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\', esc[1] = (char)c;
			put(w, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(w, esc, 6);
		} else {
			put(w, (const char *)&c, 1);
		}
	}
	put(w, "\"", 1);
}

static ssize_t finish(struct writer *w)
{
	return w->full ? -EMSGSIZE : (ssize_t)w->len;
}

static int writer_start(struct writer *w, char *buf, size_t cap, const char *op,
			const char *path)
{
	int rc = sw_codec_check_path(path);

	if (rc)
		return rc;
	*w = (struct writer){ .buf = buf, .cap = cap, .full = !buf || cap == 0 };
	if (!w->full)
		buf[0] = 0;
	put_str(w, "{\"op\":\"");
	put_str(w, op);
	put_str(w, "\",\"path\":");
	put_json_string(w, path);
	return 0;
}

ssize_t sw_codec_encode_register(char *buf, size_t cap, const char *path,
				 enum sw_heal heal)
{
	const char *h = sw_heal_name(heal);
	struct writer w;
	int rc;

	if (!h)
		return -EINVAL;
	rc = writer_start(&w, buf, cap, "register", path);
	if (rc)
		return rc;
	put_str(&w, ",\"heal\":\"");
	put_str(&w, h);
	put_str(&w, "\"}");
	return finish(&w);
}

ssize_t sw_codec_encode_adopted(char *buf, size_t cap, const char *path, uint64_t seq)
{
	char num[32];
	struct writer w;
	int rc;

	if (seq == 0 || seq > INT64_MAX)
		return -EINVAL;
	rc = writer_start(&w, buf, cap, "adopted", path);
	if (rc)
		return rc;
	snprintf(num, sizeof(num), ",\"seq\":%llu}", (unsigned long long)seq);
	put_str(&w, num);
	return finish(&w);
}

ssize_t sw_codec_encode_unregister(char *buf, size_t cap, const char *path)
{
	struct writer w;
	int rc = writer_start(&w, buf, cap, "unregister", path);

	if (rc)
		return rc;
	put_str(&w, "}");
	return finish(&w);
}

/* Public, but it belongs with the names the codec writes. */
SW_API const char *sw_heal_name(enum sw_heal heal)
{
	switch (heal) {
	case SW_HEAL_FD:
		return "fd";
	case SW_HEAL_NOTIFY:
		return "notify";
	case SW_HEAL_NONE:
		return "none";
	}
	return NULL;
}
