//go:build integration

package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moatrt/moat/internal/fstest"
)

// A privileged moat container (`docker run --privileged`, as Docker-in-Docker
// needs) keeps every capability inside its own user namespace but can touch
// nothing of the host's: no host device, no module, no BPF, no global sysctl
// or sysfs knob, no host disk, and its processes are unprivileged host IDs.

var bpftoolImage = envOr("MOAT_BPFTOOL_IMAGE", "moat-test/bpftool:1")

// privContainer starts a detached privileged moat container running sleep.
func privContainer(t *testing.T, opts ...string) string {
	t.Helper()
	return dockerRun(t, append([]string{"--privileged"}, opts...), "sleep", "600")
}

// privSh runs a shell script in a running container.
func privSh(container, script string) result {
	return docker("exec", container, "sh", "-c", script)
}

// privControl runs args under runc --privileged in img, the setup moat must
// be stricter than. Where runc cannot start a privileged container at all
// (it asks for every capability, and a machine whose own bounding set lacks
// one makes it fail with "unable to apply caps"), hostArgv runs directly on
// the host as real root instead: the same binaries, without any confinement.
// It returns the result and which control ran.
func privControl(t *testing.T, opts []string, img string, hostArgv []string, args ...string) (result, string) {
	t.Helper()
	n := name(t)
	all := append([]string{"run", "--rm", "--runtime", "runc", "--privileged", "--name", n}, opts...)
	all = append(append(all, img), args...)
	r := docker(all...)
	if !strings.Contains(r.stderr, "OCI runtime create failed") {
		return r, "runc --privileged"
	}
	t.Logf("runc --privileged cannot start here (%s); control runs on the host instead", strings.TrimSpace(r.stderr))
	return run("", hostArgv[0], hostArgv[1:]...), "host root"
}

// denied reports whether a failed write's message is a permission refusal
// (and not, say, a missing file).
func denied(msg string) bool {
	for _, s := range []string{"Permission denied", "Operation not permitted", "Read-only file system"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// The container's /dev is the safe set, whatever the host has.
func TestPrivilegedDevices(t *testing.T) {
	n := privContainer(t)
	listing := mustDocker(t, "exec", n, "ls", "-1", "/dev")
	inside := map[string]bool{}
	for _, e := range strings.Fields(listing) {
		inside[e] = true
	}
	t.Logf("ls /dev in the container: %s", strings.Join(strings.Fields(listing), " "))

	// Only what moat lets through plus what docker always adds.
	allowed := map[string]bool{
		"null": true, "zero": true, "full": true, "random": true, "urandom": true, "tty": true,
		"fuse": true, "net": true, // net/tun
		"pts": true, "ptmx": true, "console": true, "shm": true, "mqueue": true,
		"fd": true, "stdin": true, "stdout": true, "stderr": true, "core": true,
	}
	for e := range inside {
		if !allowed[e] {
			t.Errorf("/dev/%s is in a privileged container (not in the safe set)", e)
		}
	}
	for _, want := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if !inside[want] {
			t.Errorf("/dev/%s missing from the container", want)
		}
	}
	for _, opt := range []string{"fuse", "net/tun"} {
		if _, err := os.Stat("/dev/" + opt); err == nil {
			if r := privSh(n, "test -c /dev/"+opt); r.code != 0 {
				t.Errorf("host has /dev/%s but the container does not: %s", opt, r)
			}
		}
	}

	// No block device at all, and only safe character devices.
	if out := mustDocker(t, "exec", n, "find", "/dev", "-type", "b"); out != "" {
		t.Errorf("block devices in the container:\n%s", out)
	}
	chars := mustDocker(t, "exec", n, "find", "/dev", "-type", "c")
	t.Logf("character devices in the container: %s", strings.Join(strings.Fields(chars), " "))
	for _, c := range strings.Fields(chars) {
		switch {
		case strings.HasPrefix(c, "/dev/pts/"):
		case map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/random": true,
			"/dev/urandom": true, "/dev/tty": true, "/dev/fuse": true, "/dev/net/tun": true,
			"/dev/ptmx": true, "/dev/console": true}[c]:
		default:
			t.Errorf("unexpected character device %s in the container", c)
		}
	}

	// Every block device the host has (disks, partitions, loop, zram, dm...)
	// and every other host /dev entry outside the safe set is absent.
	var hostBlock []string
	if es, err := os.ReadDir("/sys/class/block"); err == nil {
		for _, e := range es {
			hostBlock = append(hostBlock, e.Name())
		}
	}
	sort.Strings(hostBlock)
	t.Logf("host block devices (/sys/class/block): %s", strings.Join(hostBlock, " "))
	if len(hostBlock) == 0 {
		t.Log("note: the host lists no block device; the block-device part checks nothing")
	}
	var hostDev []string
	if es, err := os.ReadDir("/dev"); err == nil {
		for _, e := range es {
			if !allowed[e.Name()] {
				hostDev = append(hostDev, e.Name())
			}
		}
	}
	for _, d := range append(hostBlock, hostDev...) {
		if inside[d] {
			t.Errorf("host device /dev/%s visible in the container", d)
		}
	}
	// Names that must never show up, whether or not this host has them.
	for _, e := range strings.Fields(listing) {
		for _, p := range []string{"sd", "vd", "hd", "xvd", "nvme", "loop", "mmcblk", "dm-", "md", "sr", "zram", "ram", "mem", "kmem", "port", "kmsg", "mapper"} {
			if strings.HasPrefix(e, p) {
				t.Errorf("/dev/%s in the container", e)
			}
		}
	}

	// Control: the same image under runc --privileged gets the host's disks.
	if len(hostBlock) > 0 {
		r, how := privControl(t, nil, image, []string{"ls", "-1", "/dev"}, "ls", "-1", "/dev")
		if r.code != 0 {
			t.Fatalf("control (%s) ls /dev: %s", how, r)
		}
		seen := false
		for _, e := range strings.Fields(r.stdout) {
			for _, b := range hostBlock {
				seen = seen || e == b
			}
		}
		if !seen {
			t.Errorf("control (%s) shows none of the host's block devices either, so the check proves nothing: %s", how, r.stdout)
		}
		t.Logf("control (%s) ls /dev: %s", how, strings.Join(strings.Fields(r.stdout), " "))
	}
}

// Loading a kernel module is refused by the permission check, before the
// kernel looks at the file.
func TestPrivilegedModuleLoad(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	// Not a module at all: a kernel that got past the permission check would
	// say "invalid module format" (ENOEXEC).
	garbage := filepath.Join(dir, "garbage.ko")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("this is not a kernel module\n"), 128), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []string{"garbage.ko"}
	// A real module of the host's, copied (never bind /lib/modules itself).
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		root := filepath.Join("/lib/modules", strings.TrimSpace(string(rel)))
		var found string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || found != "" {
				return filepath.SkipDir
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".ko") || strings.Contains(p, ".ko.")) {
				found = p
				return filepath.SkipAll
			}
			return nil
		})
		if found != "" {
			data, err := os.ReadFile(found)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Base(found)
			if err := os.WriteFile(filepath.Join(dir, base), data, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, base)
			t.Logf("host module copied: %s", found)
		} else {
			t.Logf("note: no .ko under %s; only the garbage file is tried", root)
		}
	}

	n := privContainer(t, "-v", dir+":/mod:ro")
	// Control on the garbage file only: a real module must never be loaded
	// into the host by a test.
	control, how := privControl(t, []string{"-v", dir + ":/mod:ro"}, image,
		[]string{"/bin/busybox", "insmod", garbage}, "insmod", "/mod/garbage.ko")
	t.Logf("control (%s) insmod garbage.ko: %s", how, control)

	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			r := docker("exec", n, "insmod", "/mod/"+f)
			t.Logf("insmod /mod/%s in the container: exit %d, stderr %q", f, r.code, strings.TrimSpace(r.stderr))
			if r.code == 0 {
				t.Fatalf("insmod of %s succeeded in a privileged moat container", f)
			}
			if strings.Contains(r.stderr, "Operation not permitted") {
				return
			}
			const nosys = "kernel does not support requested operation" // busybox's text for ENOSYS
			if strings.Contains(r.stderr, nosys) && strings.Contains(control.stderr, nosys) {
				t.Skipf("this kernel has no module loader (init_module is ENOSYS for %s too: %q), so EPERM cannot be shown; the container's insmod failed with %q",
					how, strings.TrimSpace(control.stderr), strings.TrimSpace(r.stderr))
			}
			t.Fatalf("insmod failed, but not with EPERM (the permission check must come first): %s", r)
		})
	}
}

// BPF is global: bpftool can list nothing in a privileged moat container.
func TestPrivilegedBPF(t *testing.T) {
	if docker("image", "inspect", bpftoolImage).code != 0 {
		t.Logf("building %s", bpftoolImage)
		must(t, "../scripts/mkbpftool-image.sh", bpftoolImage)
	}
	var hostBpftool string
	for _, p := range []string{"/usr/sbin/bpftool", "/sbin/bpftool", "/usr/bin/bpftool"} {
		if _, err := os.Stat(p); err == nil {
			hostBpftool = p
			break
		}
	}
	for _, tc := range []struct{ obj, want string }{
		{"map", "Error: can't get next map: Operation not permitted"},
		{"prog", "Error: can't get next program: Operation not permitted"},
		{"link", "Operation not permitted"},
	} {
		t.Run(tc.obj, func(t *testing.T) {
			n := name(t)
			r := docker("run", "--rm", "--runtime", "moat", "--privileged", "--name", n, bpftoolImage, "/usr/sbin/bpftool", tc.obj, "show")
			t.Logf("moat: bpftool %s show: exit %d, stdout %q, stderr %q", tc.obj, r.code, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("bpftool %s show in a privileged moat container: want failure with %q: %s", tc.obj, tc.want, r)
			}
			if hostBpftool == "" {
				t.Skip("no bpftool on the host for the control")
			}
			c, how := privControl(t, nil, bpftoolImage, []string{hostBpftool, tc.obj, "show"}, "/usr/sbin/bpftool", tc.obj, "show")
			t.Logf("control (%s): bpftool %s show: exit %d, stdout %q, stderr %q", how, tc.obj, c.code, strings.TrimSpace(c.stdout), strings.TrimSpace(c.stderr))
			if strings.Contains(c.stderr, "Operation not permitted") || strings.Contains(c.stdout, "Operation not permitted") {
				t.Errorf("control (%s) fails with EPERM too, so the check proves nothing: %s", how, c)
			}
		})
	}
}

// Host-global knobs under /proc/sys, /proc and /sys cannot be written, and
// the host's value stays as it was.
func TestPrivilegedKernelSettings(t *testing.T) {
	flip := func(a, b string) func(string) string {
		return func(cur string) string {
			if cur == a {
				return b
			}
			return a
		}
	}
	// selected is the [bracketed] choice of a sysfs multiple-choice file.
	selected := func(v string) string {
		if i, j := strings.Index(v, "["), strings.Index(v, "]"); i >= 0 && j > i {
			return v[i+1 : j]
		}
		return v
	}
	cases := []struct {
		path  string
		value func(cur string) string // what the container tries to write
		// restore turns a value read back into what writing restores it.
		restore func(string) string
	}{
		{"/proc/sys/kernel/panic", flip("0", "30"), nil},
		{"/proc/sys/kernel/sysrq", flip("0", "1"), nil},
		{"/proc/sys/vm/swappiness", flip("10", "20"), nil},
		{"/proc/sys/vm/drop_caches", func(string) string { return "1" }, nil},
		{"/proc/sysrq-trigger", func(string) string { return "h" }, nil},
		{"/sys/kernel/mm/transparent_hugepage/enabled", func(cur string) string { return flip("never", "madvise")(selected(cur)) }, selected},
		{"/sys/module/printk/parameters/time", flip("N", "Y"), nil},
	}
	n := privContainer(t)
	tried := 0
	for _, tc := range cases {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			if _, err := os.Stat(tc.path); err != nil {
				t.Skipf("host has no %s", tc.path)
			}
			tried++
			before, rerr := os.ReadFile(tc.path)
			readable := rerr == nil
			cur := strings.TrimSpace(string(before))
			if readable && tc.path != "/proc/sys/vm/drop_caches" {
				// Should the write get through, put the host back.
				t.Cleanup(func() {
					now, err := os.ReadFile(tc.path)
					if err == nil && strings.TrimSpace(string(now)) != cur {
						v := cur
						if tc.restore != nil {
							v = tc.restore(cur)
						}
						os.WriteFile(tc.path, []byte(v), 0o644)
					}
				})
			}
			v := tc.value(cur)
			r := privSh(n, "echo "+v+" > "+tc.path)
			t.Logf("echo %s > %s: exit %d, stderr %q", v, tc.path, r.code, strings.TrimSpace(r.stderr))
			if r.code == 0 {
				t.Errorf("write to %s succeeded in a privileged moat container", tc.path)
			} else if !denied(r.stderr) {
				t.Errorf("write to %s failed, but not as a refusal: %s", tc.path, r)
			}
			if !readable {
				t.Logf("note: %s is write-only on the host (%v); its value cannot be compared", tc.path, rerr)
				return
			}
			after, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(after)) != cur {
				t.Errorf("host %s changed: %q -> %q", tc.path, cur, strings.TrimSpace(string(after)))
			}
		})
	}
	if tried == 0 {
		t.Error("the host has none of the knobs, nothing was checked")
	}
}

// rootDevice returns the host's root disk as "major:minor" and the root
// file system's type.
func rootDevice(t *testing.T) (string, string, string) {
	t.Helper()
	ms, err := fstest.Mounts("/")
	if err != nil {
		t.Fatal(err)
	}
	var dev, fstype, src string
	for _, m := range ms {
		// The last mount on / is the one on top.
		if m.Mountpoint == "/" {
			dev, fstype, src = fmt.Sprintf("%d:%d", m.Major, m.Minor), m.FSType, m.Source
		}
	}
	if dev == "" || strings.HasPrefix(dev, "0:") {
		// Not on a block device (overlay, btrfs subvolume...): take a disk.
		es, _ := os.ReadDir("/sys/block")
		for _, e := range es {
			if b := e.Name(); !strings.HasPrefix(b, "loop") && !strings.HasPrefix(b, "ram") && !strings.HasPrefix(b, "zram") {
				if d, err := os.ReadFile("/sys/block/" + b + "/dev"); err == nil {
					dev, fstype, src = strings.TrimSpace(string(d)), "ext4", "/dev/"+b
					break
				}
			}
		}
	}
	if dev == "" {
		t.Skip("the host has no block device")
	}
	return dev, fstype, src
}

// The host's root disk cannot be mounted: there is no node for it, and none
// can be made.
func TestPrivilegedBlockDeviceMount(t *testing.T) {
	dev, fstype, src := rootDevice(t)
	mm := strings.SplitN(dev, ":", 2)
	t.Logf("host root: %s (%s), type %s", src, dev, fstype)
	n := privContainer(t)
	cases := []struct {
		name, script, want string
	}{
		{"mknod in /dev", "mknod /dev/moat-x b " + mm[0] + " " + mm[1], "Operation not permitted"},
		{"mknod in own tmpfs", "mkdir -p /tmp/own && mount -t tmpfs tmpfs /tmp/own && mknod /tmp/own/x b " + mm[0] + " " + mm[1], "Operation not permitted"},
		// busybox words both EPERM and EACCES from mount(2) so; the kernel
		// refuses a disk file system in a user namespace (EPERM).
		{"mount the made node", "mkdir -p /mnt/host && mount -t " + fstype + " /dev/moat-x /mnt/host", "permission denied (are you root?)"},
		{"mount the host source", "mkdir -p /mnt/host && mount -t " + fstype + " " + src + " /mnt/host", "permission denied (are you root?)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := privSh(n, tc.script)
			t.Logf("%s: exit %d, stderr %q", tc.script, r.code, strings.TrimSpace(r.stderr))
			if r.code == 0 {
				t.Fatalf("%q succeeded in a privileged moat container", tc.script)
			}
			if tc.want != "" && !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%q: want %q: %s", tc.script, tc.want, r)
			}
		})
	}
	if r := privSh(n, "test -e /dev/moat-x || test -e /tmp/own/x"); r.code == 0 {
		t.Error("a device node for the host disk exists in the container")
	}
	if out := mustDocker(t, "exec", n, "cat", "/proc/self/mounts"); strings.Contains(out, " /mnt/host ") {
		t.Errorf("something is mounted at /mnt/host:\n%s", out)
	}
}

// The container's processes are host IDs of its own range, not host root.
func TestPrivilegedHostIDs(t *testing.T) {
	n := privContainer(t)
	m := uidMap(t, n, "/proc/self/uid_map")
	t.Logf("uid_map: %s", m)
	start := mapStart(t, m)
	if f := strings.Fields(m); f[0] != "0" || f[2] != "65536" || start < 100000 {
		t.Fatalf("uid_map %q, want 0 <start>=100000> 65536", m)
	}
	if g := uidMap(t, n, "/proc/self/gid_map"); g != m {
		t.Errorf("gid_map %q differs from uid_map %q", g, m)
	}
	pid := mustDocker(t, "inspect", "-f", "{{.State.Pid}}", n)
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatUint(uint64(start), 10)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") {
			t.Logf("host /proc/%s/status %s", pid, strings.Join(strings.Fields(l), " "))
			for _, id := range strings.Fields(l)[1:] {
				if id != want {
					t.Errorf("container init %s, want every id %s", l, want)
				}
			}
		}
	}
	top := mustDocker(t, "top", n, "-o", "pid,uid,gid,comm")
	t.Logf("docker top:\n%s", top)
	found := false
	for _, l := range strings.Split(top, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == pid {
			found = true
			if f[1] != want || f[2] != want {
				t.Errorf("docker top shows %s:%s for the init, want %s:%s", f[1], f[2], want, want)
			}
		}
	}
	if !found {
		t.Errorf("docker top does not list the container's init %s", pid)
	}
}

// What privileged is for still works inside the container.
func TestPrivilegedStillWorks(t *testing.T) {
	n := privContainer(t)
	t.Run("uid 0 with every capability", func(t *testing.T) {
		if out := mustDocker(t, "exec", n, "id", "-u"); out != "0" {
			t.Fatalf("id -u: %q", out)
		}
		status := mustDocker(t, "exec", n, "cat", "/proc/self/status")
		caps := map[string]string{}
		for _, l := range strings.Split(status, "\n") {
			if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "Cap") {
				caps[strings.TrimSuffix(f[0], ":")] = f[1]
			}
		}
		t.Logf("CapEff %s CapBnd %s", caps["CapEff"], caps["CapBnd"])
		if caps["CapEff"] == "" || caps["CapEff"] != caps["CapBnd"] || strings.Trim(caps["CapEff"], "0") == "" {
			t.Errorf("privileged container lacks capabilities in its namespace: %v", caps)
		}
	})
	t.Run("mount tmpfs", func(t *testing.T) {
		out := mustDocker(t, "exec", n, "sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs tmpfs /mnt/t && echo hi > /mnt/t/f && cat /mnt/t/f && grep ' /mnt/t ' /proc/self/mounts")
		t.Logf("tmpfs: %s", out)
		if !strings.HasPrefix(out, "hi\n") || !strings.Contains(out, " /mnt/t tmpfs ") {
			t.Fatalf("tmpfs mount: %q", out)
		}
	})
	for _, kind := range []string{"dummy", "bridge"} {
		t.Run("ip link add "+kind, func(t *testing.T) {
			link := "moat" + kind + "0"
			r := privSh(n, "ip link add "+link+" type "+kind+" && ip -o link show "+link)
			t.Logf("ip link add %s type %s: exit %d, stdout %q, stderr %q", link, kind, r.code, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
			if r.code == 0 {
				if !strings.Contains(r.stdout, link) {
					t.Fatalf("link not listed: %s", r)
				}
				// It lives in the container's network namespace only.
				if _, err := os.Stat("/sys/class/net/" + link); err == nil {
					t.Errorf("%s appeared on the host", link)
				}
				return
			}
			if strings.Contains(r.stderr, "Operation not supported") {
				// Is the link type missing from this kernel? Ask it as host
				// root in a fresh network namespace with the same busybox.
				c := run("", "unshare", "-n", "/bin/busybox", "ip", "link", "add", link, "type", kind)
				if c.code != 0 && strings.Contains(c.stderr, "Operation not supported") {
					t.Skipf("this kernel has no %s link type (host root gets %q too)", kind, strings.TrimSpace(c.stderr))
				}
				t.Logf("host control: %s", c)
			}
			t.Fatalf("ip link add %s type %s failed in a privileged container: %s", link, kind, r)
		})
	}
}

// sealWatcher runs in a privileged container as the attacker of
// CVE-2019-5736: it waits for a process whose executable is not the
// image's busybox (the runtime's init for a `docker exec`), tries to hold
// that executable open, and if it can, writes through what it holds once
// the process has exited. It logs each step to /tmp/seal.log.
const sealWatcher = `
while :; do
  for e in /proc/[0-9]*/exe; do
    t=$(readlink "$e" 2>/dev/null)
    [ "$t" = /bin/busybox ] && continue
    if ! (exec 3<"$e") 2>/dev/null; then
      echo "cannot-open $e $t" >>/tmp/seal.log
      continue
    fi
    exec 3<"$e"
    echo "held $e $t $(stat -L -c %d:%i /proc/$$/fd/3)" >>/tmp/seal.log
    while [ -e "${e%/exe}" ]; do :; done
    if (echo pwned >>/proc/$$/fd/3) 2>>/tmp/seal.log; then echo WROTE >>/tmp/seal.log; else echo refused >>/tmp/seal.log; fi
    exit 0
  done
done`

// The runtime binary a `docker exec` runs inside a privileged container
// cannot be overwritten from the container (CVE-2019-5736). This test
// races the exec as the attacker would. Three things stand in the way:
// the exec's process is not dumpable until it runs the container's
// program, so its executable cannot be opened through /proc; what it runs
// is a sealed copy, not the host's file (libcontainer's exeseal); and the
// container's root is an unprivileged host uid, which cannot write a host
// root's file in any case.
func TestRuntimeBinarySealed(t *testing.T) {
	n := privContainer(t)
	mustDocker(t, "exec", "-d", n, "sh", "-c", sealWatcher)
	// The host's root watches too, from outside, for what the exec's
	// process runs.
	stop := make(chan struct{})
	seen := make(chan []string)
	go func() { seen <- watchInits(stop) }()
	var log string
	for i := 0; i < 30 && strings.Count(log, "cannot-open") < 3 && !strings.Contains(log, "refused") && !strings.Contains(log, "WROTE"); i++ {
		docker("exec", n, "true")
		log = docker("exec", n, "cat", "/tmp/seal.log").stdout
	}
	close(stop)
	inits := <-seen
	t.Logf("attacker's log:\n%s", log)
	if strings.Contains(log, "WROTE") {
		t.Fatalf("the container wrote through the runtime's executable")
	}
	if !strings.Contains(log, "held") && !strings.Contains(log, "cannot-open") {
		t.Fatalf("the attacker never saw the exec's runtime process; the test proves nothing")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(moatBin, &st); err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	t.Logf("%s is %s; the exec's init ran %v", moatBin, host, inits)
	if len(inits) == 0 {
		t.Error("the host never saw an exec's init process")
	}
	for _, exe := range inits {
		if exe == host {
			t.Errorf("an exec's init runs the host's %s itself, not a sealed copy", moatBin)
		}
	}
	for _, l := range strings.Split(log, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "held" && f[3] == host {
			t.Errorf("the exec's process runs the host's %s itself (%s), not a sealed copy", moatBin, l)
		}
	}
	if data, err := os.ReadFile(moatBin); err == nil && bytes.HasSuffix(data, []byte("pwned\n")) {
		t.Errorf("%s ends with the attacker's bytes", moatBin)
	}
}

// watchInits scans the host's processes until stop is closed and returns
// the device:inode of each executable that a runtime init process (comm
// runc:[2:INIT], as libcontainer names it) ran.
func watchInits(stop chan struct{}) []string {
	found := map[string]bool{}
	for {
		select {
		case <-stop:
			out := make([]string, 0, len(found))
			for k := range found {
				out = append(out, k)
			}
			sort.Strings(out)
			return out
		default:
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			if err != nil || string(comm) != "runc:[2:INIT]\n" {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join("/proc", e.Name(), "exe"), &st) == nil {
				found[fmt.Sprintf("%d:%d", st.Dev, st.Ino)] = true
			}
		}
	}
}
