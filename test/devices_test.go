//go:build integration

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A container may open only the devices it was given: the base set, and
// those it named that the allowlist permits. Device nodes it finds anywhere
// else (carried by its image, put there by `docker cp`) open nothing, even
// --privileged or with --device-cgroup-rule allowing them.

// loopDevice attaches a loop device over a file holding marker and
// returns the device's path and the file's.
func loopDevice(t *testing.T, marker string) (dev, file string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "disk")
	data := make([]byte, 1<<20)
	copy(data, marker)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run("", "losetup", "--find", "--show", file)
	if r.err != nil {
		t.Skipf("no loop device to attach here: %s", r)
	}
	dev = strings.TrimSpace(r.stdout)
	t.Cleanup(func() { run("", "losetup", "--detach", dev) })
	return dev, file
}

func devNumbers(t *testing.T, path string) (major, minor uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev)
}

// nodeImage imports the test image with extra device nodes: a block node
// with the numbers of the loop device, and /dev/kmsg's char node.
func nodeImage(t *testing.T, loopMajor, loopMinor uint32) string {
	t.Helper()
	dir := t.TempDir()
	must(t, "../scripts/mkrootfs.sh", dir)
	if err := unix.Mknod(filepath.Join(dir, "disk"), unix.S_IFBLK|0o666, int(unix.Mkdev(loopMajor, loopMinor))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "kmsg"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 11))); err != nil {
		t.Fatal(err)
	}
	img := "moat-test/devnodes:" + randomID()
	r := run("", "sh", "-c", fmt.Sprintf("tar -C %s -c . | %s import - %s", dir, dockerBin, img))
	if r.err != nil {
		t.Fatalf("import %s: %s", img, r)
	}
	t.Cleanup(func() { docker("rmi", "-f", img) })
	return img
}

// kernelLog is the kernel's log as dmesg prints it.
func kernelLog(t *testing.T) string {
	t.Helper()
	return must(t, "dmesg")
}

func TestDeviceNodesFromImage(t *testing.T) {
	marker := "moat-marker-" + randomID()
	loop, file := loopDevice(t, marker)
	major, minor := devNumbers(t, loop)
	img := nodeImage(t, major, minor)

	// Each probe tries the image's block node and kmsg node, and one that
	// docker cp brought in, for reading and writing.
	kmsgLine := "moat-kmsg-" + randomID()
	script := fmt.Sprintf(`for n in /disk /copied; do
  if head -c 64 $n 2>/dev/null | grep -q %[1]s; then echo "read $n"; fi
  if printf overwritten | dd of=$n conv=notrunc 2>/dev/null; then echo "wrote $n"; fi
done
if echo %[2]s 2>/dev/null > /kmsg; then echo "wrote /kmsg"; fi
true`, marker, kmsgLine)

	copied := filepath.Join(t.TempDir(), "copied")
	if err := unix.Mknod(copied, unix.S_IFBLK|0o666, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}

	// The control: under runc, with the cgroup rule, the same nodes reach
	// the host's disk; so a clean result under moat is moat's doing.
	t.Run("runc control", func(t *testing.T) {
		n := name(t)
		mustDocker(t, "run", "-d", "--runtime", "runc", "--name", n,
			"--device-cgroup-rule", fmt.Sprintf("b %d:* r", major), img, "sleep", "600")
		out := mustDocker(t, "exec", n, "sh", "-c", "head -c 64 /disk")
		if !strings.Contains(out, marker) {
			t.Skipf("the image's node does not reach the loop device even under runc (%q): nothing to compare", out)
		}
	})

	tests := []struct {
		name string
		opts []string
	}{
		{"privileged", []string{"--privileged"}},
		{"device cgroup rules", []string{
			"--device-cgroup-rule", fmt.Sprintf("b %d:* rwm", major),
			"--device-cgroup-rule", "c 1:11 rwm",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := name(t)
			all := append([]string{"run", "-d", "--runtime", "moat", "--name", n}, tt.opts...)
			mustDocker(t, append(all, img, "sleep", "600")...)
			mustDocker(t, "cp", copied, n+":/copied")
			if ls := mustDocker(t, "exec", n, "ls", "-l", "/disk", "/copied", "/kmsg"); strings.Count(ls, "\n") != 2 {
				t.Fatalf("the nodes are not all in the container: %s", ls)
			}
			r := docker("exec", n, "sh", "-c", script)
			if r.err != nil {
				t.Fatalf("probe: %s", r)
			}
			if got := strings.TrimSpace(r.stdout); got != "" {
				t.Errorf("the container reached host devices through nodes it did not get:\n%s", got)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), marker) {
				t.Errorf("the loop device's file changed: %q", data[:32])
			}
			if strings.Contains(kernelLog(t), kmsgLine) {
				t.Errorf("the container wrote %q into the host's kernel log", kmsgLine)
			}
		})
	}
}

// Devices named with --device: the base set and allowlisted ones are
// given, owned by the container's root so that it can open them, at the
// path asked for; any other is refused by name, with the config key to
// change.
func TestNamedDevices(t *testing.T) {
	marker := "moat-named-" + randomID()
	loop, _ := loopDevice(t, marker)
	major, minor := devNumbers(t, loop)

	t.Run("base devices open", func(t *testing.T) {
		n := dockerRun(t, []string{"--device", "/dev/fuse", "--device", "/dev/net/tun"}, "sleep", "600")
		out := mustDocker(t, "exec", n, "sh", "-c", "stat -c '%n %u:%g %t:%T' /dev/fuse /dev/net/tun && exec 3<>/dev/fuse 4<>/dev/net/tun && echo opened")
		if want := "/dev/fuse 0:0 a:e5\n/dev/net/tun 0:0 a:c8\nopened"; out != want {
			t.Errorf("devices inside: %q, want %q", out, want)
		}
	})

	t.Run("allowlisted device at another path reads the host device", func(t *testing.T) {
		rt, _ := configuredRuntime(t, fmt.Sprintf("[devices]\nallowed = [%q]\n", loop))
		out := mustDocker(t, "run", "--rm", "--runtime", rt, "--device", loop+":/dev/xvdb", image,
			"sh", "-c", "stat -c '%u:%g %t:%T' /dev/xvdb && head -c 64 /dev/xvdb")
		if want := fmt.Sprintf("0:0 %x:%x\n%s", major, minor, marker); !strings.HasPrefix(out, want) {
			t.Errorf("device inside: %q, want it to start with %q", out, want)
		}
	})

	t.Run("a base device at a host file's path is a device, not the file", func(t *testing.T) {
		host, err := os.ReadFile("/etc/hostname")
		if err != nil {
			t.Fatal(err)
		}
		out := mustDocker(t, "run", "--rm", "--runtime", "moat", "--device", "/dev/null:/etc/hostname", image,
			"sh", "-c", "stat -c '%F %t:%T' /etc/hostname && echo x > /etc/hostname && cat /etc/hostname")
		if out != "character special file 1:3" {
			t.Errorf("inside: %q, want the null device", out)
		}
		if now, _ := os.ReadFile("/etc/hostname"); string(now) != string(host) {
			t.Errorf("the host's /etc/hostname changed: %q", now)
		}
	})

	refused := []struct {
		name, device, want string
	}{
		{"not on the allowlist", loop,
			fmt.Sprintf("can't give the container device %s (b %d:%d) because it's not on the device allowlist (devices.allowed in /etc/moat/config.toml)", loop, major, minor)},
		{"a disk at a harmless device's path", loop + ":/dev/null",
			fmt.Sprintf("can't give the container device /dev/null (b %d:%d) because it's not on the device allowlist", major, minor)},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := takeSnapshot(t, dockerRoot)
			r := docker("run", "--rm", "--runtime", "moat", "--device", tt.device, image, "true")
			if r.err == nil || !strings.Contains(r.stderr, "OCI runtime create failed") || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("want create to fail with %q: %s", tt.want, r)
			}
			checkUnchanged(t, dockerRoot, before)
		})
	}
}
