// +build linux

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <pthread.h>

#include "onbehalf.h"

/* A worker is a process that shares the helper's memory and file table
 * (CLONE_VM, CLONE_FILES) and lives in one container's user namespace. It
 * runs on the thread-local storage of the Go thread that made it, so it
 * touches no libc state: every system call below is made by rsys, which
 * returns -errno and never writes errno, and it never allocates. Its
 * signals are blocked and their handlers reset, so nothing of Go's runs on
 * it. It dies with the helper (PR_SET_PDEATHSIG). */

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
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 0x00000008
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
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
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_statmount
#define SYS_statmount 457
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
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

#define STATMOUNT_SB_BASIC 0x00000001U
#define STATMOUNT_MNT_BASIC 0x00000002U
#define STATMOUNT_MNT_ROOT 0x00000008U
#define STATMOUNT_MNT_POINT 0x00000010U

struct mv_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* struct mnt_id_req and struct statmount of Linux 6.8. */
struct mv_mnt_id_req {
	uint32_t size, spare;
	uint64_t mnt_id, param;
};

struct mv_statmount {
	uint32_t size, spare1;
	uint64_t mask;
	uint32_t sb_dev_major, sb_dev_minor;
	uint64_t sb_magic;
	uint32_t sb_flags, fs_type;
	uint64_t mnt_id, mnt_parent_id;
	uint32_t mnt_id_old, mnt_parent_id_old;
	uint64_t mnt_attr, mnt_propagation, mnt_peer_group, mnt_master, propagate_from;
	uint32_t mnt_root, mnt_point;
	uint64_t spare2[50];
	char str[];
};

#define WORKER_STACK (512 * 1024)
#define CHILD_STACK (192 * 1024)
#define GRANDCHILD_STACK (64 * 1024)

#if defined(__x86_64__)
static long rsys(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
static long rsys(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory", "cc");
	return x0;
}
#else
#error "mount vetting supports x86_64 and aarch64"
#endif

#define S0(n) rsys(n, 0, 0, 0, 0, 0, 0)
#define S1(n, a) rsys(n, (long)(a), 0, 0, 0, 0, 0)
#define S2(n, a, b) rsys(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define S3(n, a, b, c) rsys(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define S4(n, a, b, c, d) rsys(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define S5(n, a, b, c, d, e) rsys(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

static int ropen(const char *path, int flags)
{
	return (int)S4(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC, 0);
}

static void rclose(int fd)
{
	if (fd >= 0)
		S1(SYS_close, fd);
}

/* fail records stage and the error e (a negative return of rsys). */
static int fail(struct mv_req *r, int stage, long e)
{
	r->stage = stage;
	r->err = e < 0 ? (int)-e : EINVAL;
	return -1;
}

static void futex_wait(int *addr, int val)
{
	S4(SYS_futex, addr, FUTEX_WAIT, val, 0);
}

static void futex_wake(int *addr)
{
	S3(SYS_futex, addr, FUTEX_WAKE, INT_MAX);
}

/* About 50 microseconds of cpu_relax. */
#define SPIN_ROUNDS 2000

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
	__asm__ volatile("pause" ::: "memory");
#else
	__asm__ volatile("yield" ::: "memory");
#endif
}

static int load(int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void set(int *p, int v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
	futex_wake(p);
}

/* mount_id is the mountinfo id of fd's mount. */
static long mount_id(int fd, unsigned long long *id)
{
	struct statx st;
	long e;

	memset(&st, 0, sizeof(st));
	e = S5(SYS_statx, fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &st);
	if (e < 0)
		return e;
	if (!(st.stx_mask & STATX_MNT_ID))
		return -EOPNOTSUPP;
	*id = st.stx_mnt_id;
	return 0;
}

/* mount_of describes the mount of fd: with statmount, as mountinfo would;
 * without, by its id alone. */
static long mount_of(int fd, struct mv_mount *m)
{
	struct statx st;
	struct mv_mnt_id_req q = { .size = sizeof(q) };
	struct mv_statmount *sm = (struct mv_statmount *)m->buf;
	long e;

	m->have = 0;
	m->rootoff = m->pointoff = -1;
	memset(&st, 0, sizeof(st));
	e = S5(SYS_statx, fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID_UNIQUE, &st);
	if (e < 0)
		return e;
	m->root = (st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (st.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	if (st.stx_mask & STATX_MNT_ID_UNIQUE) {
		q.mnt_id = st.stx_mnt_id;
		q.param = STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC | STATMOUNT_MNT_ROOT | STATMOUNT_MNT_POINT;
		if (S4(SYS_statmount, &q, sm, sizeof(m->buf), 0) == 0) {
			m->have = 1;
			m->id = sm->mnt_id_old;
			m->parent = sm->mnt_parent_id_old;
			m->major = sm->sb_dev_major;
			m->minor = sm->sb_dev_minor;
			m->attr = sm->mnt_attr;
			if (sm->mask & STATMOUNT_MNT_ROOT)
				m->rootoff = (int)(offsetof(struct mv_statmount, str) + sm->mnt_root);
			if (sm->mask & STATMOUNT_MNT_POINT)
				m->pointoff = (int)(offsetof(struct mv_statmount, str) + sm->mnt_point);
			return 0;
		}
	}
	return mount_id(fd, &m->id);
}

/* umount_by_name unmounts the vetted mount by its name in its parent
 * directory, held open as the working directory: a mount point cannot be
 * renamed or removed, so the name cannot come to mean another mount, and
 * the worker holds no reference that would make the mount busy. A target
 * whose last part is a symlink, or that has no last part, is detached
 * through the working directory instead. */
static long umount_by_name(struct mv_req *r, int *tfd)
{
	char dir[PATH_MAX + 1], base[NAME_MAX + 1];
	const char *t = r->target;
	size_t n = strlen(t), slash, blen;
	int dfd, bfd, follow = !r->nofollow;
	unsigned long long id;
	struct stat st;
	long e;

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
	dfd = ropen(dir, O_PATH | O_DIRECTORY);
	if (dfd < 0)
		goto detach;
	if (S4(SYS_newfstatat, dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || (S_ISLNK(st.st_mode) && follow)) {
		rclose(dfd);
		goto detach;
	}
	bfd = (int)S4(SYS_openat, dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
	if (bfd < 0 || mount_id(bfd, &id) < 0 || id != r->tm.id) {
		rclose(bfd);
		rclose(dfd);
		goto detach;
	}
	rclose(bfd);
	/* The worker's own reference would make the mount busy. */
	rclose(*tfd);
	*tfd = -1;
	e = S1(SYS_fchdir, dfd);
	rclose(dfd);
	if (e < 0)
		return e;
	return S2(SYS_umount2, base, (int)r->flags | UMOUNT_NOFOLLOW);

detach:
	/* "." from a working directory at the mount's root names that mount
	 * itself: the worker's reference makes only a lazy unmount possible. */
	if ((e = S1(SYS_fchdir, *tfd)) < 0)
		return e;
	return S2(SYS_umount2, ".", ((int)r->flags & ~UMOUNT_NOFOLLOW) | MNT_DETACH);
}

/* new_fs builds the new filesystem detached, where nobody sees it, puts
 * the masks on it, and only then attaches it at the vetted target: the
 * caller never sees it unmasked. */
static long new_fs(struct mv_req *r, int tfd)
{
	char opts[4097], *o, *next, *eq;
	int fs, m = -1, i;
	long e = 0;

	fs = (int)S2(SYS_fsopen, r->fstype, FSOPEN_CLOEXEC);
	if (fs < 0)
		return fs;
	if (r->data && r->data[0]) {
		if (strlen(r->data) >= sizeof(opts)) {
			e = -EINVAL;
			goto out;
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
				e = S5(SYS_fsconfig, fs, MV_FSCONFIG_SET_STRING, o, eq + 1, 0);
			} else {
				e = S5(SYS_fsconfig, fs, MV_FSCONFIG_SET_FLAG, o, 0, 0);
			}
			if (e < 0)
				goto out;
		}
	}
	if ((e = S5(SYS_fsconfig, fs, MV_FSCONFIG_CMD_CREATE, 0, 0, 0)) < 0)
		goto out;
	m = (int)S3(SYS_fsmount, fs, FSMOUNT_CLOEXEC, (unsigned int)r->attr_set);
	if (m < 0) {
		e = m;
		goto out;
	}
	for (i = 0; i < r->nsteps; i++) {
		const struct mv_step *st = &r->steps[i];
		struct mv_mount_attr a = { .attr_set = st->attr };
		int src = st->src ? (int)S3(SYS_open_tree, AT_FDCWD, st->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW)
				  : (int)S3(SYS_open_tree, m, st->self, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
		if (src < 0) {
			e = src;
			goto out;
		}
		if (st->attr)
			e = S5(SYS_mount_setattr, src, "", AT_EMPTY_PATH, &a, sizeof(a));
		if (e == 0)
			e = S5(SYS_move_mount, src, "", m, st->dst, MOVE_MOUNT_F_EMPTY_PATH);
		rclose(src);
		if (e < 0)
			goto out;
	}
	e = S5(SYS_move_mount, m, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	if (e == 0 && mount_of(m, &r->nm) < 0)
		r->nm.id = 0;
out:
	rclose(m);
	rclose(fs);
	return e;
}

/* spin waits a little while *p is from, for the other side to answer
 * without either falling asleep: a wake-up costs more than the wait. It
 * returns the state it saw last. */
static int spin(int *p, int from)
{
	int i, s = from;

	for (i = 0; i < SPIN_ROUNDS && (s = load(p)) == from; i++)
		cpu_relax();
	return s;
}

/* verdict reports the resolved mounts and waits for the helper's decision:
 * 1 to go on, 0 to stop. The helper decides in microseconds. */
static int verdict(struct mv_worker *w)
{
	int s;

	set(&w->state, MV_HELD);
	if ((s = spin(&w->state, MV_HELD)) == MV_HELD)
		while ((s = load(&w->state)) == MV_HELD)
			futex_wait(&w->state, MV_HELD);
	return s == MV_GO;
}

/* act resolves the request's paths as the caller, with no capability the
 * caller has not got, and carries it out. */
static int act(struct mv_worker *w)
{
	struct mv_req *r = &w->req;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	int tfd = -1, sfd = -1, tree;
	long e = 0;

	memset(data, 0, sizeof(data));
	data[0].effective = (uint32_t)r->capeff;
	data[1].effective = (uint32_t)(r->capeff >> 32);
	data[0].effective &= w->capfull[0];
	data[1].effective &= w->capfull[1];
	data[0].permitted = w->capfull[0];
	data[1].permitted = w->capfull[1];
	/* A privileged caller has them all already. */
	if (data[0].effective != w->capfull[0] || data[1].effective != w->capfull[1]) {
		w->lowered = 1;
		if ((e = S2(SYS_capset, &hdr, data)) < 0)
			return fail(r, MV_STAGE_CAPS, e);
	}
	if (r->target) {
		tfd = ropen(r->target, O_PATH | (r->nofollow ? O_NOFOLLOW : 0));
		if (tfd < 0)
			return fail(r, MV_STAGE_TARGET, tfd);
		if ((e = mount_of(tfd, &r->tm)) < 0) {
			rclose(tfd);
			return fail(r, MV_STAGE_TARGET, e);
		}
	}
	if (r->want_source) {
		sfd = ropen(r->source, O_PATH);
		if (sfd < 0 || (e = mount_of(sfd, &r->sm)) < 0) {
			e = sfd < 0 ? sfd : e;
			rclose(sfd);
			rclose(tfd);
			return fail(r, MV_STAGE_SOURCE, e);
		}
	}
	if (r->hold && !verdict(w)) {
		rclose(sfd);
		rclose(tfd);
		return 0;
	}
	switch (r->op) {
	case MV_NEW:
	case MV_REMOUNT:
	case MV_PROPAGATION:
		/* "." does not cross into mounts stacked on the working
		 * directory: it is the mount that was resolved and vetted. */
		if ((e = S1(SYS_fchdir, tfd)) == 0)
			e = S5(SYS_mount, r->source, ".", r->fstype, r->flags, r->data);
		break;
	case MV_SETATTR: {
		struct mv_mount_attr a = { .attr_set = r->attr_set, .attr_clr = r->attr_clr };
		e = S5(SYS_mount_setattr, tfd, "", AT_EMPTY_PATH, &a, sizeof(a));
		break;
	}
	case MV_BIND:
		tree = (int)S3(SYS_open_tree, sfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
				(r->recursive ? AT_RECURSIVE : 0));
		if (tree < 0) {
			e = tree;
			break;
		}
		e = S5(SYS_move_mount, tree, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
		if (e == 0 && mount_of(tree, &r->nm) < 0)
			r->nm.id = 0;
		rclose(tree);
		break;
	case MV_MOVE:
		e = S5(SYS_move_mount, sfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
		break;
	case MV_UMOUNT:
		e = umount_by_name(r, &tfd);
		break;
	case MV_NEWFS:
		e = new_fs(r, tfd);
		break;
	default:
		e = -EINVAL;
	}
	rclose(sfd);
	rclose(tfd);
	if (e < 0)
		return fail(r, MV_STAGE_OP, e);
	return 0;
}

static int grandchild(void *arg)
{
	act(arg);
	return 0;
}

/* child joins the namespaces other than user and mount that a new
 * filesystem takes from its mounter; a pid namespace only applies to the
 * children of who joins it. It runs while the worker waits (CLONE_VFORK). */
static int child(void *arg)
{
	struct mv_worker *w = arg;
	struct mv_req *r = &w->req;
	static const int types[MV_NS_COUNT] = {
		CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWCGROUP, CLONE_NEWPID,
	};
	char stack[GRANDCHILD_STACK] __attribute__((aligned(16)));
	long e;
	int i;

	for (i = MV_NS_NET; i < MV_NS_COUNT; i++) {
		if (r->ns[i] >= 0 && (e = S2(SYS_setns, r->ns[i], types[i])) < 0)
			return fail(r, MV_STAGE_SETNS, e);
	}
	if (r->ns[MV_NS_PID] < 0) {
		act(w);
		return 0;
	}
	/* glibc's clone touches errno only when it fails. */
	e = clone(grandchild, stack + sizeof(stack), CLONE_VM | CLONE_VFORK, arg);
	if (e < 0)
		return fail(r, MV_STAGE_CLONE, -EAGAIN);
	S4(SYS_wait4, e, 0, __WALL, 0);
	return 0;
}

static int needs_child(struct mv_req *r)
{
	int i;

	for (i = MV_NS_NET; i < MV_NS_COUNT; i++)
		if (r->ns[i] >= 0)
			return 1;
	return 0;
}

/* serve carries out one request: it takes the caller's mount namespace,
 * root and working directory, acts, and goes back to where it lives, so
 * that it pins none of the caller's mounts between calls. */
static void serve(struct mv_worker *w)
{
	struct mv_req *r = &w->req;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct full[2];
	char stack[CHILD_STACK] __attribute__((aligned(16)));
	long e;

	r->err = 0;
	r->stage = MV_OK;
	r->tm.have = r->sm.have = r->nm.have = 0;
	r->tm.id = r->sm.id = r->nm.id = 0;
	if (r->ns[MV_NS_MNT] >= 0 && (e = S2(SYS_setns, r->ns[MV_NS_MNT], CLONE_NEWNS)) < 0) {
		fail(r, MV_STAGE_SETNS, e);
		goto out;
	}
	if ((e = S1(SYS_fchdir, r->rootfd)) < 0 || (e = S1(SYS_chroot, ".")) < 0 ||
	    (r->cwdfd >= 0 && (e = S1(SYS_fchdir, r->cwdfd)) < 0)) {
		fail(r, MV_STAGE_ROOT, e);
		goto out;
	}
	if (!needs_child(r)) {
		act(w);
	} else {
		e = clone(child, stack + sizeof(stack), CLONE_VM | CLONE_VFORK, w);
		if (e < 0)
			fail(r, MV_STAGE_CLONE, -EAGAIN);
		else
			S4(SYS_wait4, e, 0, __WALL, 0);
	}
out:
	if (w->lowered) {
		memset(full, 0, sizeof(full));
		full[0].effective = full[0].permitted = w->capfull[0];
		full[1].effective = full[1].permitted = w->capfull[1];
		S2(SYS_capset, &hdr, full);
		w->lowered = 0;
	}
	/* Back home: the worker's mount namespace, at its root. */
	S2(SYS_setns, w->mntfd, CLONE_NEWNS);
}

static int worker_main(void *arg)
{
	struct mv_worker *w = arg;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[2];
	unsigned long dfl[4] = { 0 }; /* the kernel's struct sigaction: SIG_DFL */
	int sig, s;
	long e;

	for (sig = 1; sig < 65; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			S4(SYS_rt_sigaction, sig, dfl, 0, 8);
	if ((e = S2(SYS_setns, w->userfd, CLONE_NEWUSER)) < 0 || (e = S2(SYS_setns, w->mntfd, CLONE_NEWNS)) < 0 ||
	    (e = S2(SYS_setgroups, 0, 0)) < 0 || (e = S3(SYS_setresgid, 0, 0, 0)) < 0 ||
	    (e = S3(SYS_setresuid, 0, 0, 0)) < 0) {
		w->err = (int)-e;
		return 1;
	}
	/* Only now: a change of ids clears it. Changes of the effective
	 * capabilities alone, as on each call, leave it. The worker shares
	 * the helper's file table, its socket and its lock among the files:
	 * it must not outlive it. */
	S2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
	if (S0(SYS_getppid) != w->helper) {
		w->err = ESRCH;
		return 1;
	}
	memset(caps, 0, sizeof(caps));
	if ((e = S2(SYS_capget, &hdr, caps)) < 0) {
		w->err = (int)-e;
		return 1;
	}
	w->capfull[0] = caps[0].permitted;
	w->capfull[1] = caps[1].permitted;
	set(&w->state, MV_IDLE);
	for (;;) {
		while ((s = load(&w->state)) != MV_REQ)
			futex_wait(&w->state, s);
		serve(w);
		set(&w->state, MV_DONE);
	}
}

/* mv_worker_start starts w in the namespaces userfd and mntfd. It returns
 * 0, or an errno. */
int mv_worker_start(struct mv_worker *w)
{
	sigset_t all, old;
	int pidfd = -1;
	long pid;

	w->stack = mmap(NULL, WORKER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (w->stack == MAP_FAILED) {
		w->stack = NULL;
		return errno;
	}
	w->state = MV_REQ; /* anything but MV_GONE and MV_IDLE */
	w->err = 0;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(worker_main, (char *)w->stack + WORKER_STACK,
		    CLONE_VM | CLONE_FILES | CLONE_PIDFD | CLONE_CHILD_CLEARTID, w, &pidfd, NULL, &w->state);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		int e = errno;
		munmap(w->stack, WORKER_STACK);
		w->stack = NULL;
		return e;
	}
	w->pid = (int)pid;
	w->pidfd = pidfd;
	if (mv_worker_wait(w, MV_REQ) != MV_IDLE) {
		int e = w->err ? w->err : ECHILD;
		mv_worker_stop(w);
		return e;
	}
	return 0;
}

/* mv_worker_post moves w from state from to to and wakes the worker. It
 * returns 0; the state w was in if it was not from; -1 if w is gone. */
int mv_worker_post(struct mv_worker *w, int from, int to)
{
	int seen = from;

	if (!__atomic_compare_exchange_n(&w->state, &seen, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return seen == 0 ? -1 : seen;
	syscall(SYS_futex, &w->state, FUTEX_WAKE, 1, NULL, NULL, 0);
	return 0;
}

/* mv_worker_wait sleeps while w's state is from, and returns the state. */
int mv_worker_wait(struct mv_worker *w, int from)
{
	int s;

	while ((s = load(&w->state)) == from)
		syscall(SYS_futex, &w->state, FUTEX_WAIT, from, NULL, NULL, 0);
	return s;
}

/* mv_worker_stop ends w, reaps it and frees its stack. */
void mv_worker_stop(struct mv_worker *w)
{
	siginfo_t info;

	if (w->pidfd >= 0) {
		if (load(&w->state) != MV_GONE)
			syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
		while (waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &info, WEXITED | __WALL) < 0 && errno == EINTR)
			;
		close(w->pidfd);
		w->pidfd = -1;
	}
	if (w->stack) {
		munmap(w->stack, WORKER_STACK);
		w->stack = NULL;
	}
}
