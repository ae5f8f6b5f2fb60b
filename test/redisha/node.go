// Package redisha starts highly available Redis set-ups for tests, on
// loopback: a Redis Cluster of three masters with one replica each, and a
// Sentinel set-up of one master, one replica and three sentinels. Both fail
// over within a few seconds (short down-after and node timeouts), and both
// offer a way to SIGKILL a master and wait for its replica's promotion, so
// tests can check what mailgate does while Redis fails over.
//
// It is separate from test/redistest (one plain node) because these
// set-ups need many processes, config files and waits that a single-node
// test should not pay for.
package redisha

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
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

	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// Node is one redis-server or redis-sentinel process owned by a test.
type Node struct {
	Addr string
	Port int
	Dir  string
	bin  string
	args []string
	tb   testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	cl   *redis.Client
	tls  *tls.Config // set for a node that speaks only TLS
	pass string      // requirepass, when set
}

// newNode prepares (but does not start) a process on a free loopback port;
// extra returns its arguments, given its port and directory.
func newNode(tb testing.TB, bin, name string, extra func(port int, dir string) []string) *Node {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	port := claimPort(tb)
	n := &Node{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: dir, bin: bin, tb: tb}
	n.args = extra(port, dir)
	tb.Cleanup(n.Kill)
	return n
}

// Start runs the process (again, after Kill: same port, same directory) and
// waits until it answers PING.
func (n *Node) Start() {
	n.tb.Helper()
	if n.cmd != nil {
		n.tb.Fatalf("redisha: %s is already running", n.Addr)
	}
	log, err := os.OpenFile(filepath.Join(n.Dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.tb.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(n.bin, n.args...)
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		n.tb.Fatalf("redisha: start %s: %v", n.bin, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(n.done)
	ok := testwait.Poll(15*time.Second, func() bool {
		select {
		case <-n.done:
			return true // exited: reported below
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		pid, err := n.pid(ctx)
		return err == nil && pid == cmd.Process.Pid
	})
	select {
	case <-n.done:
		ok = false
	default:
	}
	if !ok {
		b, _ := os.ReadFile(filepath.Join(n.Dir, "log"))
		n.tb.Fatalf("redisha: %s on %s did not start:\n%s", filepath.Base(n.bin), n.Addr, b)
	}
}

// Kill stops the process with SIGKILL, as a crash would, and waits for it.
func (n *Node) Kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// Running reports whether the process was started and not killed.
func (n *Node) Running() bool { return n.cmd != nil }

// Client is a plain client of this one node (not following redirects or
// failovers), closed when the test ends.
func (n *Node) Client() *redis.Client {
	if n.cl == nil {
		n.cl = redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second, TLSConfig: n.tls,
			Password: n.pass})
		n.tb.Cleanup(func() { _ = n.cl.Close() })
	}
	return n.cl
}

// claimPort claims a loopback port the way test/redistest does, with the
// same lock directory and range, so that no redistest server, no other
// redisha node and no listener on port 0 (the kernel's ephemeral range lies
// above it) can take it, not even while a killed node is down. The lock is
// held until the test ends.
func claimPort(tb testing.TB) int {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mailgate-redistest-ports-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		tb.Fatalf("redisha: port lock directory: %v", err)
	}
	lo, hi := portRange()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			tb.Fatalf("redisha: port lock: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // another test holds this port
			continue
		}
		tb.Cleanup(func() { f.Close() })
		return port
	}
	tb.Fatalf("redisha: no unclaimed port in %d-%d after 1000 tries", lo, hi)
	return 0
}

// portRange is below the kernel's ephemeral range (as in test/redistest).
func portRange() (lo, hi int) {
	lo, hi = 20000, 30000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if eph, err := strconv.Atoi(f[0]); err == nil && eph > 11000 {
			return 10000, min(eph, 30000)
		}
	}
	return lo, hi
}

// pid is the process id the server on n.Addr reports (INFO server), so a
// test never takes a stranger listening on the port for its node.
func (n *Node) pid(ctx context.Context) (int, error) {
	info, err := n.Client().Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("INFO server of %s has no process_id", n.Addr)
}

// serverBin is redis-server; the failure names the Debian package.
func serverBin(tb testing.TB) string { return testbin.Path(tb, "redis-server", "redis-server") }

// dataArgs are the arguments every data node shares: loopback only, no
// RDB snapshots, an append-only file fsynced every second (what an SRE
// would run; it also lets a killed master come back with its data).
func dataArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--protected-mode", "no", "--daemonize", "no", "--logfile", "",
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--maxmemory-policy", "noeviction",
		// A replica that (re)joins syncs at once, not after the 5 s a
		// master waits by default for more replicas to share the transfer.
		"--repl-diskless-sync-delay", "0",
	}
}

func ctx5() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

var errNotYet = errors.New("not yet")

func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotYet, fmt.Sprintf(format, args...))
}
