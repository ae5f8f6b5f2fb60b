package fault

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/testwait"
)

// forwarder stands between mailgate and the simulator on a fixed loopback
// port, so a test can take "the SMTP server" away and bring it back at the
// same address: exosim always listens on a port of its own choosing and its
// CA is fixed at start, so a second simulator could not take the first one's
// place. Down closes the listener (connections are refused) and cuts every
// open connection; Up listens on the same port again.
//
// Latency, when set, delays every chunk the server sends (each SMTP reply,
// in practice), which makes a delivery take a known minimum time, so a test
// can stop mailgate while messages are surely in flight.
//
// LoseReplies, when set, lets a request through to the server but cuts the
// connection instead of passing on the reply, for every request in which
// the given bytes occur: the server did the work, the client never learns
// it — what a crash between a command and its reply looks like.
type forwarder struct {
	tb          testing.TB
	target      string
	addr        string
	latency     atomic.Int64 // time.Duration
	loseReplies atomic.Pointer[[]byte]

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startForwarder(tb testing.TB, target string) *forwarder {
	tb.Helper()
	f := &forwarder{tb: tb, target: target, conns: make(map[net.Conn]struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("forwarder: %v", err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	tb.Cleanup(f.Down)
	return f
}

// Port is the port mailgate is configured with.
func (f *forwarder) Port() int { return f.mustTCPAddr().Port }

func (f *forwarder) mustTCPAddr() *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", f.addr)
	if err != nil {
		f.tb.Fatalf("forwarder address %q: %v", f.addr, err)
	}
	return a
}

// SetLatency delays each chunk from the server by d.
func (f *forwarder) SetLatency(d time.Duration) { f.latency.Store(int64(d)) }

// LoseReplies cuts the connection instead of forwarding the reply to any
// request containing marker (case-insensitive); nil forwards everything.
func (f *forwarder) LoseReplies(marker []byte) {
	if marker == nil {
		f.loseReplies.Store(nil)
		return
	}
	m := bytes.ToLower(marker)
	f.loseReplies.Store(&m)
}

// Down refuses new connections and cuts the open ones; it returns when every
// forwarding goroutine has ended.
func (f *forwarder) Down() {
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// Up listens on the same port again. Go sets SO_REUSEADDR, so connections
// of the previous listener left in TIME_WAIT do not block the bind; the
// retry covers the moment the kernel takes to release the port.
func (f *forwarder) Up() {
	f.tb.Helper()
	testwait.UntilNil(f.tb, 5*time.Second, func() error {
		ln, err := net.Listen("tcp", f.addr)
		if err != nil {
			return fmt.Errorf("forwarder: listen again on %s: %w", f.addr, err)
		}
		f.serve(ln)
		return nil
	})
}

func (f *forwarder) serve(ln net.Listener) {
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.pipe(c) }()
		}
	}()
}

// track registers c so Down can cut it; false when the forwarder is down.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// pipe forwards one connection both ways; when either side ends, both are
// closed, so a client killed mid-session frees its slot at the simulator.
func (f *forwarder) pipe(client net.Conn) {
	if !f.track(client) {
		client.Close()
		return
	}
	defer f.untrack(client)
	server, err := net.DialTimeout("tcp", f.target, 5*time.Second)
	if err != nil {
		return
	}
	if !f.track(server) {
		server.Close()
		return
	}
	defer f.untrack(server)
	done := make(chan struct{}, 2)
	var marked atomic.Bool // the request in flight asked for its reply to be lost
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if m := f.loseReplies.Load(); m != nil && bytes.Contains(bytes.ToLower(buf[:n]), *m) {
					marked.Store(true)
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		server.Close()
		client.Close()
		done <- struct{}{}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				if marked.Load() {
					break // the reply is lost: the client sees the connection end
				}
				if d := time.Duration(f.latency.Load()); d > 0 {
					time.Sleep(d) // simulated network latency, not a wait for a condition
				}
				if _, werr := client.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break // EOF, or a connection cut by Down
			}
		}
		server.Close()
		client.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}
