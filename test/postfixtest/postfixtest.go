// Package postfixtest starts a real Postfix for tests, on a loopback port,
// from a configuration and queue of its own, and stops it when the test
// ends.
//
// Postfix is the strict peer: with strict_rfc821_envelopes = yes it answers
// 501 to an envelope address without angle brackets, which Exchange Online
// tolerates, so it catches what a test against Exchange's simulator cannot.
// The instance listens on 127.0.0.1 only and hands every message it accepts
// to the discard transport (or, with Options.RelayHost, to a loopback
// server the test runs): nothing leaves the machine.
//
// The Postfix master runs as root, as it does in production; a test run by
// another user fails and says so. Tests find the binaries through testbin,
// so a machine without Postfix fails naming the package (`make deps`).
package postfixtest

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// Options change the instance's main.cf.
type Options struct {
	// Main are main.cf settings added after the defaults (and overriding
	// them), e.g. {"strict_rfc821_envelopes": "yes"}.
	Main map[string]string
	// RelayHost, when set ("127.0.0.1:2525"), is where accepted messages
	// go instead of the discard transport. It must be a loopback address.
	RelayHost string
}

// Server is a running Postfix owned by one test.
type Server struct {
	Host string // 127.0.0.1
	Port int
	// Hostname is the instance's myhostname, unique per instance: its
	// banner proves a test talks to its own Postfix.
	Hostname string
	dir      string
	postfix  string
}

// Addr is host:port of the instance's smtpd.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Log returns the instance's mail log, for a failing test's message.
func (s *Server) Log() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "maillog"))
	if err != nil {
		return "(no mail log: " + err.Error() + ")"
	}
	return string(b)
}

// Start runs a Postfix instance until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	postfix := testbin.Path(t, "postfix", "postfix")
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: the Postfix master must be started as root (running as uid %d)", os.Geteuid())
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("postfixtest: no postfix user (install the Debian package postfix): %v", err)
	}
	uid, _ := strconv.Atoi(pf.Uid)

	// Postfix's daemons run as the postfix user and must reach the queue:
	// every directory on the way must be searchable.
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	etc, queue, data := filepath.Join(dir, "etc"), filepath.Join(dir, "queue"), filepath.Join(dir, "data")
	for _, d := range []string{etc, queue, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(data, uid, -1); err != nil {
		t.Fatal(err)
	}

	s := &Server{Host: "127.0.0.1", Port: freePort(t), Hostname: "postfixtest-" + strings.ToLower(rand.Text()[:10]) + ".invalid",
		dir: dir, postfix: postfix}
	transport := "discard:postfixtest"
	if o.RelayHost != "" {
		host, port, err := net.SplitHostPort(o.RelayHost)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Fatalf("postfixtest: RelayHost %q must be a loopback IP address and port", o.RelayHost)
		}
		transport = "smtp:[" + host + "]:" + port
	}
	main := []string{
		"compatibility_level = 3.6",
		"queue_directory = " + queue,
		"data_directory = " + data,
		"meta_directory = /etc/postfix",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"myhostname = " + s.Hostname,
		"mydestination =",
		"mynetworks = 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, reject",
		"default_transport = " + transport,
		"relay_transport = " + transport,
		"local_transport = " + transport,
		"alias_maps =",
		"alias_database =",
		"smtputf8_enable = no",
		"maillog_file_prefixes = " + dir,
		"maillog_file = " + filepath.Join(dir, "maillog"),
	}
	for k, v := range o.Main {
		main = append(main, k+" = "+v)
	}
	write(t, filepath.Join(etc, "main.cf"), strings.Join(main, "\n")+"\n")
	write(t, filepath.Join(etc, "master.cf"), fmt.Sprintf(masterCF, s.Host, s.Port))

	t.Cleanup(func() {
		// abort, not stop: the test is over, whatever is queued is discarded.
		_ = exec.Command(postfix, "-c", etc, "abort").Run()
	})
	if out, err := exec.Command(postfix, "-c", etc, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\nmail log:\n%s", err, out, s.Log())
	}
	testwait.Until(t, 20*time.Second, func() bool { return s.greets() }, "Postfix %s to greet on %s; mail log:\n%s",
		s.Hostname, s.Addr(), logTail{s})
	return s
}

// logTail prints the mail log when a wait fails (read then, not now).
type logTail struct{ s *Server }

func (l logTail) String() string { return l.s.Log() }

// greets reports whether this instance (its own hostname) answers.
func (s *Server) greets() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "220 "+s.Hostname)
}

// freePort picks a free port below the kernel's ephemeral range, so a
// port another test's server was just given by the kernel is not handed
// out again here.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(10000))
		if err != nil {
			t.Fatal(err)
		}
		port := 20000 + int(n.Int64())
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("postfixtest: no free port in 20000-29999")
	return 0
}

func write(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// masterCF runs smtpd on one loopback address and the services a queue
// needs (tlsmgr for an smtp client that must use TLS); nothing is
// chrooted, so no copy of /etc is needed.
const masterCF = `%s:%d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
`
