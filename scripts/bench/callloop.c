/* callloop: times system calls in a loop inside a container, for the
 * mount-vetting benchmark. Prints nanoseconds per call.
 *   callloop mount N DIR   N times mount a tmpfs on DIR and unmount it
 *   callloop getpid N      N times getpid (a call no filter traps)
 *   callloop spin DIR      mount and unmount on DIR until killed */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cycle(const char *dir)
{
	if (mount("bench", dir, "tmpfs", 0, NULL) < 0) {
		perror("mount");
		return -1;
	}
	if (umount2(dir, 0) < 0) {
		perror("umount");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long long t0, n, i;

	if (argc == 3 && !strcmp(argv[1], "spin")) {
		for (;;)
			if (cycle(argv[2]) < 0)
				return 1;
	}
	if (argc < 3)
		return 2;
	n = atoll(argv[2]);
	t0 = now();
	if (!strcmp(argv[1], "mount") && argc == 4) {
		for (i = 0; i < n; i++)
			if (cycle(argv[3]) < 0)
				return 1;
		n *= 2; /* two calls per cycle */
	} else if (!strcmp(argv[1], "getpid")) {
		for (i = 0; i < n; i++)
			syscall(SYS_getpid);
	} else {
		return 2;
	}
	printf("%lld\n", (now() - t0) / n);
	return 0;
}
