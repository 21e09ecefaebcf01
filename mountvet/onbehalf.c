// +build linux

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <pthread.h>

#include "onbehalf.h"

/* The child runs on the helper's memory (CLONE_VM) while the calling
 * thread waits (CLONE_VFORK), as posix_spawn does: it makes system calls
 * only, never allocates, and every signal is blocked while it lives. */

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 0x00000008
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#define MV_FSCONFIG_SET_FLAG 0
#define MV_FSCONFIG_SET_STRING 1
#define MV_FSCONFIG_CMD_CREATE 6

struct mv_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

#define STACK_SIZE (256 * 1024)

static int fail(struct mv_req *r, int stage)
{
	r->stage = stage;
	r->err = errno ? errno : EINVAL;
	return 1;
}

/* mount_of fills the mount id of fd and whether fd is that mount's root. */
static int mount_of(int fd, unsigned long long *id, int *root)
{
	struct statx st;
	memset(&st, 0, sizeof(st));
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &st) < 0)
		return -1;
	if (!(st.stx_mask & STATX_MNT_ID)) {
		errno = EOPNOTSUPP;
		return -1;
	}
	*id = st.stx_mnt_id;
	if (root)
		*root = (st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (st.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	return 0;
}

/* umount_by_name unmounts the vetted mount by its name in its parent
 * directory, held open as the working directory: a mount point cannot be
 * renamed or removed, so the name cannot come to mean another mount, and
 * the helper holds no reference that would make the mount busy. A target
 * whose last part is a symlink, or that has no last part, is detached
 * through the working directory instead. */
static int umount_by_name(struct mv_req *r, int tfd)
{
	char dir[PATH_MAX + 1], base[NAME_MAX + 1];
	const char *t = r->target;
	size_t n = strlen(t), slash, blen;
	int dfd, bfd, follow = !r->nofollow;
	unsigned long long id;
	struct stat st;

	while (n > 1 && t[n - 1] == '/')
		n--;
	slash = n;
	while (slash > 0 && t[slash - 1] != '/')
		slash--;
	blen = n - slash;
	if (blen == 0 || blen > NAME_MAX || (blen == 1 && t[slash] == '.') ||
	    (blen == 2 && t[slash] == '.' && t[slash + 1] == '.'))
		goto detach;
	memcpy(base, t + slash, blen);
	base[blen] = 0;
	if (slash == 0) {
		strcpy(dir, ".");
	} else {
		size_t dl = slash > 1 ? slash - 1 : 1;
		if (dl > PATH_MAX)
			goto detach;
		memcpy(dir, t, dl);
		dir[dl] = 0;
	}
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		goto detach;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || (S_ISLNK(st.st_mode) && follow)) {
		close(dfd);
		goto detach;
	}
	bfd = openat(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0 || mount_of(bfd, &id, NULL) < 0 || id != r->tmnt) {
		if (bfd >= 0)
			close(bfd);
		close(dfd);
		goto detach;
	}
	close(bfd);
	/* The helper's own reference would make the mount busy. */
	close(tfd);
	if (fchdir(dfd) < 0) {
		close(dfd);
		goto detach;
	}
	close(dfd);
	return umount2(base, (int)r->flags | UMOUNT_NOFOLLOW);

detach:
	if (fcntl(tfd, F_GETFD) < 0)
		return -1;
	/* "." from a working directory at the mount's root names that mount
	 * itself: the helper's reference makes only a lazy unmount possible. */
	if (fchdir(tfd) < 0)
		return -1;
	return umount2(".", ((int)r->flags & ~UMOUNT_NOFOLLOW) | MNT_DETACH);
}

/* new_fs builds the new filesystem detached, where nobody sees it, puts
 * the masks on it, and only then attaches it at the vetted target: the
 * caller never sees it unmasked. */
static int new_fs(struct mv_req *r, int tfd)
{
	char opts[4097], *o, *next, *eq;
	int fs, m, i;

	fs = syscall(SYS_fsopen, r->fstype, FSOPEN_CLOEXEC);
	if (fs < 0)
		return -1;
	if (r->data && r->data[0]) {
		if (strlen(r->data) >= sizeof(opts)) {
			errno = EINVAL;
			return -1;
		}
		strcpy(opts, r->data);
		for (o = opts; o; o = next) {
			next = strchr(o, ',');
			if (next)
				*next++ = 0;
			if (!*o)
				continue;
			eq = strchr(o, '=');
			if (eq) {
				*eq = 0;
				if (syscall(SYS_fsconfig, fs, MV_FSCONFIG_SET_STRING, o, eq + 1, 0) < 0)
					return -1;
			} else if (syscall(SYS_fsconfig, fs, MV_FSCONFIG_SET_FLAG, o, NULL, 0) < 0) {
				return -1;
			}
		}
	}
	if (syscall(SYS_fsconfig, fs, MV_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return -1;
	m = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, (unsigned int)r->attr_set);
	if (m < 0)
		return -1;
	for (i = 0; i < r->nsteps; i++) {
		const struct mv_step *st = &r->steps[i];
		struct mv_mount_attr a = { .attr_set = st->attr };
		int src = st->src ? syscall(SYS_open_tree, AT_FDCWD, st->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW)
				  : syscall(SYS_open_tree, m, st->self, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
		if (src < 0)
			return -1;
		if (st->attr && syscall(SYS_mount_setattr, src, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
			return -1;
		if (syscall(SYS_move_mount, src, "", m, st->dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return -1;
		close(src);
	}
	if (syscall(SYS_move_mount, m, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		return -1;
	if (mount_of(m, &r->newmnt, NULL) < 0)
		r->newmnt = 0;
	return 0;
}

static int act(struct mv_req *r)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	int tfd = -1, sfd = -1, tree;

	if (fchdir(r->rootfd) < 0 || chroot(".") < 0 || fchdir(r->cwdfd) < 0)
		return fail(r, MV_STAGE_ROOT);
	/* From here on, no capability the caller has not got. */
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)r->capeff;
	data[1].effective = data[1].permitted = (uint32_t)(r->capeff >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return fail(r, MV_STAGE_CAPS);
	if (r->target) {
		tfd = open(r->target, O_PATH | O_CLOEXEC | (r->nofollow ? O_NOFOLLOW : 0));
		if (tfd < 0 || mount_of(tfd, &r->tmnt, &r->troot) < 0)
			return fail(r, MV_STAGE_TARGET);
	}
	if (r->want_source) {
		sfd = open(r->source, O_PATH | O_CLOEXEC);
		if (sfd < 0 || mount_of(sfd, &r->smnt, &r->sroot) < 0)
			return fail(r, MV_STAGE_SOURCE);
	}
	if (r->op == MV_PROBE)
		return 0;
	if ((r->expect_tmnt && r->expect_tmnt != r->tmnt) || (r->expect_smnt && r->expect_smnt != r->smnt)) {
		errno = EAGAIN;
		return fail(r, MV_STAGE_STALE);
	}
	errno = 0;
	switch (r->op) {
	case MV_NEW:
	case MV_REMOUNT:
	case MV_PROPAGATION:
		/* "." does not cross into mounts stacked on the working
		 * directory: it is the mount that was resolved and vetted. */
		if (fchdir(tfd) < 0 || mount(r->source, ".", r->fstype, r->flags, r->data) < 0)
			return fail(r, MV_STAGE_OP);
		break;
	case MV_SETATTR: {
		struct mv_mount_attr a = { .attr_set = r->attr_set, .attr_clr = r->attr_clr };
		if (syscall(SYS_mount_setattr, tfd, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
			return fail(r, MV_STAGE_OP);
		break;
	}
	case MV_BIND:
		tree = syscall(SYS_open_tree, sfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
			       (r->recursive ? AT_RECURSIVE : 0));
		if (tree < 0)
			return fail(r, MV_STAGE_OP);
		if (syscall(SYS_move_mount, tree, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
			return fail(r, MV_STAGE_OP);
		if (mount_of(tree, &r->newmnt, NULL) < 0)
			r->newmnt = 0;
		break;
	case MV_MOVE:
		if (syscall(SYS_move_mount, sfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
			return fail(r, MV_STAGE_OP);
		break;
	case MV_UMOUNT:
		if (umount_by_name(r, tfd) < 0)
			return fail(r, MV_STAGE_OP);
		break;
	case MV_NEWFS:
		if (new_fs(r, tfd) < 0)
			return fail(r, MV_STAGE_OP);
		break;
	default:
		errno = EINVAL;
		return fail(r, MV_STAGE_OP);
	}
	return 0;
}

static int act_child(void *arg)
{
	act((struct mv_req *)arg);
	return 0;
}

static int child(void *arg)
{
	struct mv_req *r = arg;
	static const int types[MV_NS_COUNT] = {
		CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP, CLONE_NEWPID,
	};
	int i;

	for (i = 0; i < MV_NS_COUNT; i++) {
		if (r->ns[i] >= 0 && setns(r->ns[i], types[i]) < 0)
			return fail(r, MV_STAGE_SETNS);
	}
	/* The caller's root: files it creates are its own. */
	if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		return fail(r, MV_STAGE_IDS);
	if (r->ns[MV_NS_PID] >= 0) {
		/* A pid namespace is entered by children only (for proc). */
		char *stack = (char *)&i - 64 * 1024;
		pid_t pid = clone(act_child, stack, CLONE_VM | CLONE_VFORK, r);
		if (pid < 0)
			return fail(r, MV_STAGE_CLONE);
		waitpid(pid, NULL, __WALL);
		return 0;
	}
	act(r);
	return 0;
}

void mv_run(struct mv_req *r)
{
	sigset_t all, old;
	char *stack;
	pid_t pid;

	r->err = 0;
	r->stage = MV_OK;
	stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED) {
		r->err = errno;
		r->stage = MV_STAGE_CLONE;
		return;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(child, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK, r);
	if (pid < 0) {
		r->err = errno;
		r->stage = MV_STAGE_CLONE;
	} else {
		while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	munmap(stack, STACK_SIZE);
}
