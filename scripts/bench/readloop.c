/* readloop: times whole reads of a file inside a container, for the views
 * benchmark: open, read to the end, close, N times. Prints nanoseconds per
 * read.
 *   readloop FILE N */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	long long t0, n, i;

	if (argc != 3)
		return 2;
	n = atoll(argv[2]);
	t0 = now();
	for (i = 0; i < n; i++) {
		int fd = open(argv[1], O_RDONLY);
		ssize_t r;

		if (fd < 0) {
			perror(argv[1]);
			return 1;
		}
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			;
		if (r < 0) {
			perror(argv[1]);
			return 1;
		}
		close(fd);
	}
	printf("%lld\n", (now() - t0) / n);
	return 0;
}
