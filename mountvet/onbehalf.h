#ifndef MOAT_ONBEHALF_H
#define MOAT_ONBEHALF_H

/* What one on-behalf operation needs and what it found. The Go side fills
 * it; mv_run carries it out in a short-lived child that joins the caller's
 * namespaces, takes its root, working directory and capabilities, and
 * resolves paths as the caller would. */

enum mv_op {
	MV_PROBE = 0,   /* resolve only */
	MV_NEW,         /* mount(2) of a new filesystem at target */
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

enum mv_ns { MV_NS_USER, MV_NS_MNT, MV_NS_NET, MV_NS_IPC, MV_NS_UTS, MV_NS_CGROUP, MV_NS_PID, MV_NS_COUNT };

enum mv_stage {
	MV_OK = 0, MV_STAGE_CLONE, MV_STAGE_SETNS, MV_STAGE_IDS, MV_STAGE_CAPS, MV_STAGE_ROOT,
	MV_STAGE_TARGET, MV_STAGE_SOURCE, MV_STAGE_STALE, MV_STAGE_OP,
};

struct mv_req {
	int ns[MV_NS_COUNT]; /* fds of the caller's namespaces; -1 keeps the helper's */
	int rootfd, cwdfd;
	unsigned long long capeff;
	int op;
	const char *source, *target, *fstype, *data;
	unsigned long flags;          /* of mount(2), or of umount2 */
	unsigned long long attr_set;  /* MV_SETATTR */
	unsigned long long attr_clr;
	int nofollow;                 /* UMOUNT_NOFOLLOW */
	int want_source;              /* resolve source to a mount too */
	int recursive;                /* MV_BIND: with the mounts below */
	unsigned long long expect_tmnt, expect_smnt; /* 0: no check */
	const struct mv_step *steps;  /* MV_NEWFS */
	int nsteps;

	/* results */
	int err, stage;
	unsigned long long tmnt, smnt, newmnt;
	int troot, sroot;
};

void mv_run(struct mv_req *r);

#endif
