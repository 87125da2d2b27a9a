/* uring_ops: one filesystem or socket operation issued through io_uring, for
 * the tests of what each attach mode sees (tests/integration/test_uring.py).
 *
 *   uring_ops unlinkat PATH    IORING_OP_UNLINKAT on PATH
 *   uring_ops connect PATH     IORING_OP_CONNECT of a stream socket to PATH
 *
 * An operation issued this way never enters the unlink/connect system calls:
 * io_uring_enter runs it in the kernel (inline or in an io-wq worker), so the
 * syscall tracepoints never fire, while vfs_unlink and unix_stream_connect
 * still run. Prints "ok" or the errno's name and number; exits 0 whenever the
 * operation was issued and completed, whatever its result, 1 otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int run_one(struct io_uring *ring, const char *op, const char *path, int *sock)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	static struct sockaddr_un sun;

	if (!sqe)
		return -EBUSY;
	if (strcmp(op, "unlinkat") == 0) {
		io_uring_prep_unlinkat(sqe, AT_FDCWD, path, 0);
		return 0;
	}
	if (strcmp(op, "connect") == 0) {
		if (strlen(path) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		*sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (*sock < 0)
			return -errno;
		sun.sun_family = AF_UNIX;
		strcpy(sun.sun_path, path);
		io_uring_prep_connect(sqe, *sock, (struct sockaddr *)&sun, sizeof(sun));
		return 0;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	int sock = -1, rc, res;

	if (argc != 3) {
		fprintf(stderr, "usage: uring_ops unlinkat|connect PATH\n");
		return 2;
	}
	rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0) {
		fprintf(stderr, "uring_ops: io_uring_queue_init: %s\n", strerror(-rc));
		return 1;
	}
	rc = run_one(&ring, argv[1], argv[2], &sock);
	if (rc < 0) {
		fprintf(stderr, "uring_ops: %s %s: %s\n", argv[1], argv[2], strerror(-rc));
		io_uring_queue_exit(&ring);
		return rc == -EINVAL ? 2 : 1;
	}
	rc = io_uring_submit_and_wait(&ring, 1);
	if (rc < 0 || io_uring_wait_cqe(&ring, &cqe) < 0) {
		fprintf(stderr, "uring_ops: submit: %s\n", strerror(rc < 0 ? -rc : errno));
		io_uring_queue_exit(&ring);
		return 1;
	}
	res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	if (res == 0)
		printf("ok\n");
	else
		printf("%s %d\n", strerrorname_np(-res) ? strerrorname_np(-res) : "E?", -res);
	if (sock >= 0)
		close(sock);
	io_uring_queue_exit(&ring);
	return 0;
}
