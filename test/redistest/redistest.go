// Package redistest starts a real redis-server for tests, on a free loopback
// port, and stops it when the test ends.
//
// mailgate's queue relies on Lua scripts, sorted sets and key expiry exactly as
// Redis 7 implements them; an in-memory imitation is not trusted to behave the
// same, so queue and delivery tests always talk to the real server. A machine
// without redis-server fails the test with the command that installs it,
// rather than skipping silently.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server owned by one test.
type Server struct {
	Addr string
	Dir  string // the server's working directory (AOF and RDB files)
	args []string
	cmd  *exec.Cmd
	tb   testing.TB
	log  string
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
	port := freePort(tb)
	args := []string{
		"--port", strconv.Itoa(port),
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
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, args: append([]string{bin}, args...), tb: tb}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the redis:// URL of the server's database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() {
	s.tb.Helper()
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Dir = s.Dir
	logPath := filepath.Join(s.Dir, "redis.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		s.tb.Fatalf("redis log: %v", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.log = cmd, logPath
	if err := waitReady(s.Addr, 10*time.Second); err != nil {
		b, _ := os.ReadFile(logPath)
		s.tb.Fatalf("redis-server on %s did not become ready: %v\n%s", s.Addr, err, b)
	}
}

// Stop shuts the server down (SIGTERM, so an AOF is flushed) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port and data directory.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start()
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReady polls with PING until the server answers PONG or the deadline passes.
func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = ping(addr)
		if last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last
}

func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
	}
	return nil
}
