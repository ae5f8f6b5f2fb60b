// Package redistest starts a real redis-server for tests, on a loopback port
// no other test can be using, and stops it when the test ends.
//
// mailgate's queue relies on Lua scripts, sorted sets and key expiry exactly as
// Redis 7 implements them; an in-memory imitation is not trusted to behave the
// same, so queue and delivery tests always talk to the real server. A machine
// without redis-server fails the test with the command that installs it,
// rather than skipping silently.
//
// # Ports
//
// redis-server cannot be told to listen on port 0 and report the port it got,
// and asking the kernel for a free port, closing it and handing the number to
// redis-server leaves a gap in which another test's listener can take it; a
// test would then talk to the wrong server, and Restart (same port, so that
// clients holding Addr reconnect) widens that gap to the whole outage. Three
// things together close it:
//
//   - Ports come from below the kernel's ephemeral range
//     (net.ipv4.ip_local_port_range), which is where every listener on port 0
//     (httptest, the SMTP simulator, other tests' servers) gets its port from,
//     so the kernel never hands one of ours to anybody else.
//   - Each port is claimed with an exclusive flock(2) on a file named after it
//     in a directory shared by every test process on the machine, held from
//     before redis-server starts until after it has stopped for good, across
//     Restart. Two redistest servers, in one test binary or in the parallel
//     binaries of `go test ./...`, therefore never share a port, and the
//     kernel releases the lock if the test process dies.
//   - Nothing else is taken on trust: a program outside this scheme may still
//     listen there. A redis-server that cannot bind exits, and the next port
//     is tried; and the server that answers is accepted only when INFO reports
//     the process id of the redis-server this package started.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/test/testwait"
)

// Server is a running redis-server owned by one test.
type Server struct {
	Addr string
	Dir  string // the server's working directory (AOF and RDB files)

	bin    string
	args   []string // without --port
	port   int
	lock   *os.File // the flock claiming port, held until cleanup
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	tb     testing.TB
	log    string
}

// Options tune the server.
type Options struct {
	// AppendFsyncAlways turns on the append-only file with fsync after every
	// write: the durability a production queue should run with.
	AppendFsyncAlways bool
	// Args are more redis-server options, such as
	// "--maxmemory-policy", "allkeys-lru".
	Args []string
}

// portAttempts is how many ports Start tries before giving up; more than one
// is only needed when a program outside this package listens on a port of
// our range.
const portAttempts = 20

// errPortTaken reports that another program listens on the port.
var errPortTaken = errors.New("port taken by another program")

// Start starts a redis-server for tb and registers its shutdown.
func Start(tb testing.TB) *Server { return StartWith(tb, Options{}) }

// StartWith starts a redis-server with opts.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server is not installed; the queue tests need a real Redis 7: " +
			"install it with `apt-get install -y redis-server` (or run `make test`, which does)")
	}
	dir := tb.TempDir()
	args := []string{
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", "",
	}
	if opts.AppendFsyncAlways {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, opts.Args...)
	s := &Server{Dir: dir, bin: bin, args: args, tb: tb}
	// Cleanups run last-registered first: the server stops, then the port
	// is released.
	tb.Cleanup(s.releasePort)
	tb.Cleanup(s.Stop)
	for attempt := 1; ; attempt++ {
		s.claimPort()
		err := s.start()
		if err == nil {
			return s
		}
		s.releasePort()
		if !errors.Is(err, errPortTaken) || attempt == portAttempts {
			tb.Fatalf("redis-server: %v", err)
		}
		tb.Logf("redis-server: %v; trying another port", err)
	}
}

// URL is the redis:// URL of the server's database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			s.tb.Errorf("close Redis client: %v", err)
		}
	})
	return c
}

// start runs redis-server on s.port and waits until it answers as itself.
func (s *Server) start() error {
	cmd := exec.Command(s.bin, append([]string{"--port", strconv.Itoa(s.port)}, s.args...)...)
	cmd.Dir = s.Dir
	s.log = filepath.Join(s.Dir, "redis.log")
	logFile, err := os.Create(s.log)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Start()
	// The child writes through its own copy of the descriptor.
	if cerr := logFile.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("log: %w", cerr)
	}
	if err != nil {
		if cmd.Process != nil {
			_ = cmd.Process.Kill() // best effort; the error above is the news
			_ = cmd.Wait()
		}
		return fmt.Errorf("start: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // exit status: see the log
	s.cmd, s.exited = cmd, exited

	var last error
	testwait.PollEvery(10*time.Second, 20*time.Millisecond, func() bool {
		select {
		case <-exited:
			last = s.exitError()
			return true
		default:
		}
		pid, err := serverPID(s.Addr)
		switch {
		case err != nil:
			last = fmt.Errorf("on %s did not become ready: %w", s.Addr, err)
			return false
		case pid != cmd.Process.Pid:
			last = fmt.Errorf("%w: the Redis answering on %s is process %d, not the one started (%d)",
				errPortTaken, s.Addr, pid, cmd.Process.Pid)
			return true
		}
		last = nil
		return true
	})
	if last != nil {
		s.Kill()
	}
	return last
}

// exitError explains why redis-server exited during start.
func (s *Server) exitError() error {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return fmt.Errorf("exited at start; its log: %w", err)
	}
	if strings.Contains(string(b), "Address already in use") {
		return fmt.Errorf("%w: %s", errPortTaken, s.Addr)
	}
	return fmt.Errorf("on %s exited at start:\n%s", s.Addr, b)
}

// Stop shuts the server down (SIGTERM, so an AOF is flushed) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.tb.Errorf("stop redis-server: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.tb.Errorf("redis-server on %s ignored SIGTERM for 10s; killing it", s.Addr)
		s.Kill()
	}
	s.cmd = nil
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.tb.Errorf("kill redis-server: %v", err)
	}
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port and data directory. The
// port stayed claimed while the server was down; if a program outside this
// package took it all the same, the test fails rather than talk to it.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.tb.Fatalf("redis-server restart: %v", err)
	}
}

// claimPort picks a port of the range and claims it with a lock.
func (s *Server) claimPort() {
	s.tb.Helper()
	// Per user, so that one user's directory never refuses another's locks;
	// across users the identity check still holds.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mailgate-redistest-ports-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		s.tb.Fatalf("redistest: port lock directory: %v", err)
	}
	lo, hi := portRange()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			s.tb.Fatalf("redistest: port lock: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // another test holds this port
			continue
		}
		s.port, s.lock, s.Addr = port, f, fmt.Sprintf("127.0.0.1:%d", port)
		return
	}
	s.tb.Fatalf("redistest: no unclaimed port in %d-%d after 1000 tries", lo, hi)
}

// releasePort gives the claimed port back; closing the file drops the lock.
func (s *Server) releasePort() {
	if s.lock == nil {
		return
	}
	if err := s.lock.Close(); err != nil {
		s.tb.Errorf("redistest: release port %d: %v", s.port, err)
	}
	s.lock = nil
}

// portRange is the range ports are picked from: below the kernel's ephemeral
// range, so that no listener on port 0 is given one of them.
func portRange() (lo, hi int) {
	lo, hi = 20000, 30000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi // not Linux: the lock and the identity check still hold
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if eph, err := strconv.Atoi(f[0]); err == nil && eph > 11000 {
			return 10000, min(eph, 30000)
		}
	}
	return lo, hi
}

// serverPID asks the server on addr for its process id (INFO server).
func serverPID(addr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: 1, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("INFO server of %s has no process_id", addr)
}
