/*
 * libsockwarden's private message codec (docs/protocol.md): an encoder for
 * the three server → agent messages and a strict decoder for the four
 * agent → server messages. No allocation, libc only. Hidden from the shared
 * library's ABI (-fvisibility=hidden); exposed here for unit tests.
 */
#ifndef SW_LIB_CODEC_H
#define SW_LIB_CODEC_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockwarden.h"

#define SW_MSG_MAX 4096

enum sw_codec_op {
	SW_OP_REGISTERED = 1, /* {"op":"registered","path":P} */
	SW_OP_ERROR,          /* {"op":"error","path":P,"reason":R}, path optional */
	SW_OP_REBIND,         /* {"op":"rebind","path":P,"seq":N} */
	SW_OP_UNREGISTERED,   /* {"op":"unregistered","path":P} */
};

struct sw_codec_msg {
	enum sw_codec_op op;
	char path[SW_SOCKET_PATH_MAX + 1];  /* "" only in an error without a path */
	char reason[SW_MSG_MAX + 1]; /* error */
	uint64_t seq;                /* rebind: >= 1 */
};

/* 0, -EINVAL (not absolute, not normalised, not UTF-8, NULL) or
 * -ENAMETOOLONG (longer than SW_SOCKET_PATH_MAX bytes). */
int sw_codec_check_path(const char *path);

/* Decodes one agent → server message of `len` bytes (not NUL-terminated).
 * Returns 0, -EMSGSIZE (more than SW_MSG_MAX bytes) or -EBADMSG (anything
 * not exactly one of the four messages: bad JSON, unknown op or key, a
 * duplicate or missing key, a wrong type, trailing bytes, invalid UTF-8). */
int sw_codec_decode(const char *buf, size_t len, struct sw_codec_msg *m);

/* Encoders: the message length (no NUL is counted, one is written), or
 * -EINVAL (bad path or heal) / -ENAMETOOLONG / -EMSGSIZE (cap too small). */
ssize_t sw_codec_encode_register(char *buf, size_t cap, const char *path,
				 enum sw_heal heal);
ssize_t sw_codec_encode_adopted(char *buf, size_t cap, const char *path,
				uint64_t seq);
ssize_t sw_codec_encode_unregister(char *buf, size_t cap, const char *path);
#endif
