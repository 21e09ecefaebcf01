#ifndef MOAT_ONBEHALF_H
#define MOAT_ONBEHALF_H

/* What one on-behalf operation needs and what it found. The Go side fills
 * it; a worker process that lives in one container's user namespace and
 * shares the helper's memory and file table carries it out: it takes the
 * caller's mount namespace, root, working directory and capabilities, and
 * resolves paths as the caller would. */

enum mv_op {
	MV_NEW = 1,     /* mount(2) of a new filesystem at target */
	MV_REMOUNT,     /* mount(2) MS_REMOUNT of the superblock at target */
	MV_SETATTR,     /* MS_REMOUNT|MS_BIND: the mount's own flags */
	MV_PROPAGATION, /* MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE */
	MV_BIND,        /* MS_BIND: a clone of source's mount at target */
	MV_MOVE,        /* MS_MOVE */
	MV_UMOUNT,      /* umount2 */
	MV_NEWFS,       /* a new proc or sysfs, built detached with the masks
	                 * of the container's own, then attached at target */
};

/* One mount of a new filesystem's masks: a clone of src (a path as the
 * caller sees it) or, when src is NULL, of the new filesystem's own self
 * (a read-only path), mounted at dst inside it with attr set. */
struct mv_step {
	const char *src, *self, *dst;
	unsigned long long attr;
};

enum mv_ns { MV_NS_USER, MV_NS_MNT, MV_NS_NET, MV_NS_IPC, MV_NS_CGROUP, MV_NS_PID, MV_NS_COUNT };

enum mv_stage {
	MV_OK = 0, MV_STAGE_CLONE, MV_STAGE_SETNS, MV_STAGE_CAPS, MV_STAGE_ROOT,
	MV_STAGE_TARGET, MV_STAGE_SOURCE, MV_STAGE_OP, MV_STAGE_WORKER,
};

/* A mount as statmount(2) describes it; have is 0 when the kernel has no
 * statmount, and only id is known then. */
#define MV_PATHBUF (2 * 4096 + 1024)
struct mv_mount {
	int have;
	unsigned long long id, parent; /* as in mountinfo */
	unsigned int major, minor;
	unsigned long long attr;       /* MOUNT_ATTR_* */
	int root;                      /* the path resolved to the mount's root */
	int rootoff, pointoff;         /* offsets of strings in buf, -1: none */
	char buf[MV_PATHBUF] __attribute__((aligned(8)));
};

struct mv_req {
	/* fds of the caller's namespaces: -1 keeps the worker's. Only the
	 * mount namespace is joined by the worker itself; the others, which
	 * a new filesystem takes from its mounter, by a child of it. */
	int ns[MV_NS_COUNT];
	int rootfd, cwdfd;             /* cwdfd -1: no relative paths */
	unsigned long long capeff;
	int op;
	int hold;                      /* wait for the verdict once resolved */
	const char *source, *target, *fstype, *data;
	unsigned long flags;           /* of mount(2), or of umount2 */
	unsigned long long attr_set;   /* MV_SETATTR */
	unsigned long long attr_clr;
	int nofollow;                  /* UMOUNT_NOFOLLOW */
	int want_source;               /* resolve source to a mount too */
	int recursive;                 /* MV_BIND: with the mounts below */
	const struct mv_step *steps;   /* MV_NEWFS */
	int nsteps;

	/* results */
	int err, stage;
	struct mv_mount tm, sm, nm;    /* target, source, the new mount */
};

/* One worker. state is the futex both sides wait on; the kernel clears it
 * when the worker exits (CLONE_CHILD_CLEARTID). */
enum mv_state { MV_GONE = 0, MV_IDLE, MV_REQ, MV_HELD, MV_GO, MV_ABORT, MV_DONE };

struct mv_worker {
	int state;
	int pid, pidfd;
	int helper;                    /* the helper's pid: the worker's parent */
	int userfd, mntfd;             /* the namespaces it lives in */
	int err;                       /* why it could not start */
	unsigned int capfull[2];       /* its capabilities, all of them */
	int lowered;                   /* it has fewer for this request */
	void *stack;
	struct mv_req req;
};

int mv_worker_start(struct mv_worker *w);
int mv_worker_post(struct mv_worker *w, int from, int to);
int mv_worker_wait(struct mv_worker *w, int from);
void mv_worker_stop(struct mv_worker *w);

#endif
