/*
 * The control protocol's decoder (docs/protocol.md): one client message to a
 * struct ctl_request, or a word that says what is wrong with it. Pure: the
 * fuzzer (fuzz/control_decode.c) and the unit test drive it alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_internal.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/paths.h"

/* ----- codec ----- */

const char *heal_name(enum heal_mode h)
{
	return h == HEAL_FD ? "fd" : h == HEAL_NOTIFY ? "notify" : "none";
}

const char *control_decode(const char *buf, size_t len, struct ctl_request *req)
{
	json_error_t jerr;
	json_t *root, *v;
	const char *key, *op;
	bool ok = true;

	memset(req, 0, sizeof(*req));
	if (len > CONTROL_MSG_MAX)
		return "too_large";
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return "malformed";
	if (!json_is_object(root)) {
		json_decref(root);
		return "malformed";
	}
	v = json_object_get(root, "op");
	if (!json_is_string(v)) {
		json_decref(root);
		return "malformed";
	}
	/* the whole op is matched below: a long unknown op is unknown_op */
	op = json_string_value(v);
	snprintf(req->op, sizeof(req->op), "%s", op);
	if (strcmp(op, "register") != 0 && strcmp(op, "unregister") != 0 &&
	    strcmp(op, "adopted") != 0 && strcmp(op, "status") != 0) {
		json_decref(root);
		return "unknown_op";
	}
	/* every key must be one this op takes, with the right type */
	json_object_foreach(root, key, v) {
		if (strcmp(key, "op") == 0)
			continue;
		if (strcmp(key, "path") == 0 && strcmp(op, "status") != 0) {
			if (!json_is_string(v) || json_string_length(v) == 0) {
				ok = false;
				break;
			}
			if (json_string_length(v) >= sizeof(req->path)) {
				json_decref(root);
				return "bad_path";
			}
			snprintf(req->path, sizeof(req->path), "%s", json_string_value(v));
		} else if (strcmp(key, "heal") == 0 && strcmp(op, "register") == 0) {
			const char *h = json_is_string(v) ? json_string_value(v) : "";

			if (strcmp(h, "fd") == 0)
				req->heal = HEAL_FD;
			else if (strcmp(h, "notify") == 0)
				req->heal = HEAL_NOTIFY;
			else if (strcmp(h, "none") == 0)
				req->heal = HEAL_NONE;
			else
				ok = false;
		} else if (strcmp(key, "seq") == 0 && strcmp(op, "adopted") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
			    json_integer_value(v) > UINT32_MAX) {
				ok = false;
				break;
			}
			req->seq = (uint32_t)json_integer_value(v);
		} else {
			ok = false;
			break;
		}
	}
	if (ok && strcmp(op, "status") != 0 && !req->path[0])
		ok = false;
	if (ok && strcmp(op, "register") == 0 && !json_object_get(root, "heal"))
		ok = false;
	if (ok && strcmp(op, "adopted") == 0 && !req->seq)
		ok = false;
	json_decref(root);
	if (!ok)
		return "malformed";
	if (req->path[0]) {
		char norm[SW_PATH_MAX];

		if (!path_normalize(req->path, norm, sizeof(norm)) ||
		    strcmp(norm, req->path) != 0 || !path_fits_sun_path(req->path) ||
		    strlen(req->path) != strnlen(req->path, sizeof(req->path)))
			return "bad_path";
	}
	return NULL;
}
