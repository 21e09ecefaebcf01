package runtime

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/utils"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// IOOpts say how a new process gets its standard streams.
type IOOpts struct {
	// Detach leaves the process running when moat exits; its stdio is moat's
	// own (or the console socket's terminal).
	Detach bool
	// ConsoleSocket receives the terminal master when the process has one
	// and moat detaches (containerd's shim passes it).
	ConsoleSocket string
	// PidFile gets the process's host PID.
	PidFile string
	// PreserveFDs passes fds 3..3+N-1 on to the process.
	PreserveFDs int
}

// newProcess converts an OCI process to libcontainer's. Kept in step with
// newProcess in runc's utils_linux.go (v1.5.2).
func newProcess(p *specs.Process, init bool) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
		Init:            init,
		LogLevel:        strconv.Itoa(int(logrus.GetLevel())),
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimitByName[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: res, Hard: rl.Hard, Soft: rl.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, err
	}
	lp.CPUAffinity = aff
	return lp, nil
}

// rlimitByName is runc's rlimitMap (rlimit_linux.go, v1.5.2).
var rlimitByName = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_STACK": unix.RLIMIT_STACK,
	"RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_AS": unix.RLIMIT_AS,
	"RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// stdio wires a process's streams and undoes the wiring when moat is done.
type stdio struct {
	closers   []io.Closer // ours, closed at the end
	postStart []io.Closer // the process's copies, closed once it runs
	wg        sync.WaitGroup
	host      console.Console
	term      console.Console
	termErr   chan error
}

// checkTerminal makes the checks of runner.checkTerminal in runc's
// utils_linux.go (v1.5.2), in moat's words.
func checkTerminal(terminal bool, o IOOpts) error {
	if o.Detach && terminal && o.ConsoleSocket == "" {
		return errors.New("cannot allocate a tty when moat detaches without --console-socket")
	}
	if (!o.Detach || !terminal) && o.ConsoleSocket != "" {
		return errors.New("--console-socket needs a detached process with a terminal")
	}
	return nil
}

// setupIO prepares p's streams. rootUID/rootGID own the pipes of a foreground
// process, so that the container's root can reopen them. Kept in step with
// setupIO in runc's utils_linux.go and setupProcessPipes in its tty.go
// (v1.5.2).
func setupIO(p *libcontainer.Process, terminal bool, o IOOpts, rootUID, rootGID int) (*stdio, error) {
	s := &stdio{}
	switch {
	case terminal && o.Detach:
		conn, err := net.Dial("unix", o.ConsoleSocket)
		if err != nil {
			return nil, fmt.Errorf("connect to console socket %s: %w", o.ConsoleSocket, err)
		}
		f, err := conn.(*net.UnixConn).File()
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("console socket %s: %w", o.ConsoleSocket, err)
		}
		p.ConsoleSocket = f
		s.postStart = append(s.postStart, f)
	case terminal:
		host, err := hostConsole()
		if err != nil {
			return nil, err
		}
		s.host = host
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return nil, err
		}
		p.ConsoleSocket = child
		s.postStart = append(s.postStart, parent, child)
		s.termErr = make(chan error, 1)
		go func() { s.termErr <- s.receiveTerminal(parent) }()
	case o.Detach:
		p.Stdin, p.Stdout, p.Stderr = os.Stdin, os.Stdout, os.Stderr
	default:
		pio, err := p.InitializeIO(rootUID, rootGID)
		if err != nil {
			return nil, fmt.Errorf("set up stdio pipes: %w", err)
		}
		s.closers = append(s.closers, pio.Stdin, pio.Stdout, pio.Stderr)
		for _, c := range []any{p.Stdin, p.Stdout, p.Stderr} {
			if c, ok := c.(io.Closer); ok {
				s.postStart = append(s.postStart, c)
			}
		}
		go func() {
			_, _ = io.Copy(pio.Stdin, os.Stdin)
			_ = pio.Stdin.Close()
		}()
		s.wg.Add(2)
		go s.copy(os.Stdout, pio.Stdout)
		go s.copy(os.Stderr, pio.Stderr)
	}
	return s, nil
}

// hostConsole finds moat's own terminal as tty.initHostConsole in runc's
// tty.go (v1.5.2) does: any of the three streams, else /dev/tty.
func hostConsole() (console.Console, error) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if c, err := console.ConsoleFromFile(f); err == nil {
			return c, nil
		}
	}
	f, err := os.Open("/dev/tty")
	if err != nil {
		return nil, fmt.Errorf("a terminal was requested but moat has none: %w", err)
	}
	return console.ConsoleFromFile(f)
}

func (s *stdio) copy(w io.Writer, r io.ReadCloser) {
	defer s.wg.Done()
	_, _ = io.Copy(w, r)
	_ = r.Close()
}

// receiveTerminal takes the pty master from the container and relays it to
// moat's own terminal, set raw. Kept in step with tty.recvtty in runc's
// tty.go (v1.5.2).
func (s *stdio) receiveTerminal(sock *os.File) error {
	f, err := recvFile(sock)
	if err != nil {
		return fmt.Errorf("receive terminal: %w", err)
	}
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		return err
	}
	if err := console.ClearONLCR(c.Fd()); err != nil {
		return err
	}
	if err := s.host.SetRaw(); err != nil {
		return fmt.Errorf("set terminal raw: %w", err)
	}
	s.term = c
	s.closers = append(s.closers, c)
	go func() { _, _ = io.Copy(c, os.Stdin) }()
	s.wg.Add(1)
	go s.copy(os.Stdout, c)
	return nil
}

// recvFile receives one fd, as RecvFile in runc's internal/cmsg/cmsg.go
// (v1.5.2), which moat cannot import.
func recvFile(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, 0)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("expected one control message, got %d", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		return nil, fmt.Errorf("expected one fd, got %d", len(fds))
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// started is called once the process runs: the terminal is in place and
// moat's copies of the process's ends can go (tty.waitConsole and
// tty.ClosePostStart in runc's tty.go, v1.5.2).
func (s *stdio) started() error {
	if s.termErr != nil {
		if err := <-s.termErr; err != nil {
			return err
		}
	}
	for _, c := range s.postStart {
		_ = c.Close()
	}
	s.postStart = nil
	return nil
}

// resize is tty.resize of runc's tty.go (v1.5.2).
func (s *stdio) resize() {
	if s.term != nil && s.host != nil {
		_ = s.term.ResizeFrom(s.host)
	}
}

// close follows tty.Close in runc's tty.go (v1.5.2).
func (s *stdio) close() {
	for _, c := range s.postStart {
		_ = c.Close()
	}
	s.wg.Wait()
	for _, c := range s.closers {
		_ = c.Close()
	}
	if s.host != nil {
		_ = s.host.Reset()
	}
}

// afterStart finishes a process that libcontainer started: it waits for
// the terminal hand-over, writes the pid file, and in the foreground relays
// signals until the process exits, returning its status. A process whose
// setup fails here is killed.
func afterStart(p *libcontainer.Process, s *stdio, o IOOpts, sigs chan os.Signal) (int, error) {
	err := s.started()
	if err == nil && o.PidFile != "" {
		pid, _ := p.Pid()
		err = writePidFile(o.PidFile, pid)
	}
	if err != nil {
		_ = p.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		return -1, err
	}
	if o.Detach {
		return 0, nil
	}
	return forward(p, s, sigs)
}

// writePidFile writes pid atomically (create and rename), as runc does,
// because the shim polls for it. Kept in step with createPidFile in runc's
// utils_linux.go (v1.5.2).
func writePidFile(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_SYNC, 0o666)
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	f.Close()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return os.Rename(tmp, path)
}

// forward relays signals to the foreground process, reaps children, and
// returns the process's exit status the way a shell reports it. Kept in
// step with signalHandler.forward and reap in runc's signals.go (v1.5.2).
func forward(p *libcontainer.Process, s *stdio, sigs chan os.Signal) (int, error) {
	pid, err := p.Pid()
	if err != nil {
		return -1, err
	}
	s.resize()
	for sig := range sigs {
		switch sig {
		case unix.SIGWINCH:
			s.resize()
		case unix.SIGCHLD:
			for {
				var ws unix.WaitStatus
				wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if wpid <= 0 || err != nil {
					break
				}
				if wpid == pid {
					_, _ = p.Wait()
					return utils.ExitStatus(ws), nil
				}
			}
		case unix.SIGURG:
			// The Go runtime's preemption signal, not meant for the container.
		default:
			if err := p.Signal(sig); err != nil {
				logrus.Debugf("forward %v: %v", sig, err)
			}
		}
	}
	return -1, errors.New("signal channel closed")
}

// notifySignals subscribes to every signal before the process starts, so
// none is lost; SIGCHLD first, as it decides when we return. Follows
// newSignalHandler in runc's signals.go (v1.5.2).
func notifySignals() chan os.Signal {
	sigs := make(chan os.Signal, 2048)
	signal.Notify(sigs, unix.SIGCHLD)
	signal.Notify(sigs)
	return sigs
}
