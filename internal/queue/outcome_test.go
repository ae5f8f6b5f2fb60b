package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
)

// replyEater is a TCP proxy in front of a real Redis that, once armed,
// passes the next script call (EVALSHA, EVAL) on but never returns its
// reply, and then goes away as Redis would: every connection through it is
// cut and new ones are refused (its listener is closed). Redis ran the
// script; the client never heard of it.
//
// Both halves matter. The reply eaten must be the script's: go-redis may
// open a connection at any moment, and eating the next reply of any
// connection can eat its handshake instead, while the script's pipeline
// succeeds on a connection opened earlier. And nothing may get through
// afterwards: a connection opened before the fault (go-redis keeps several
// in its pool) would let a retry reach Redis and learn that the message is
// stored, which is not the case under test.
type replyEater struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	armed bool // eat the reply to the next script call, then go away
	back  bool // ... and cut the connections but take new ones (Redis restarted)
	pass  int  // ... but pass this many bytes of the replies first
	dead  bool
	conns map[net.Conn]bool
}

func newReplyEater(t *testing.T, target string) *replyEater {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyEater{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { p.mu.Lock(); p.back = false; p.mu.Unlock(); p.die() })
	go p.serve()
	return p
}

func (p *replyEater) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed: from now on, connections are refused
		}
		go p.pipe(c)
	}
}

// track registers conns so die can cut them; false once dead.
func (p *replyEater) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

// die closes the listener and cuts every connection; when the eater comes
// back, only the connections are cut.
func (p *replyEater) die() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if !p.back {
		p.dead = true
		p.ln.Close()
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *replyEater) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(c, up) {
		return
	}
	var script atomic.Bool // this connection sent a script call while armed
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				p.mu.Lock()
				if p.armed && bytes.Contains(bytes.ToLower(buf[:n]), []byte("eval")) {
					script.Store(true)
				}
				p.mu.Unlock()
				if _, err := up.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				up.Close()
				return
			}
		}
	}()
	pass := -1 // bytes of the script's replies still to pass on
	_, _ = io.Copy(c, readerFunc(func(b []byte) (int, error) {
		if pass == 0 {
			p.die() // the rest of the replies is dropped with every connection
			return 0, io.EOF
		}
		n, err := up.Read(b)
		if n > 0 && script.Load() {
			if pass < 0 {
				pass = p.pass
			}
			k := min(n, pass)
			pass -= k
			return k, nil
		}
		return n, err
	}))
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func (p *replyEater) arm()         { p.mu.Lock(); p.armed = true; p.mu.Unlock() }
func (p *replyEater) addr() string { return p.ln.Addr().String() }

// A pipeline cut short: the first script's reply arrives, the others'
// are lost and Redis goes away. The first message is reported stored, the
// others as of unknown outcome (they are stored too), each on its own.
func TestEnqueueManyPipelineCutShort(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := newReplyEater(t, srv.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: p.addr(), MaxRetries: 1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	q := queue.New(rdb, queue.Options{Retention: time.Hour})
	ctx := context.Background()
	if _, _, err := q.Enqueue(ctx, message("warm-up\r\n")); err != nil {
		t.Fatal(err)
	}
	ms := []queue.Message{message("a\r\n"), withKey(message("b\r\n"), "kb"), message("c\r\n")}
	for i := range ms {
		ms[i].ID = queue.NewID(time.Now())
	}
	// The first reply, {1, id} in RESP: *2 :1 $26 <id>.
	p.pass = len("*2\r\n:1\r\n$26\r\n") + len(ms[0].ID) + 2
	p.arm()
	res := q.EnqueueManyRetrying(ctx, ms, 300*time.Millisecond)
	if r := res[0]; r.Err != nil || !r.Created || r.ID != ms[0].ID {
		t.Errorf("the message whose reply arrived: %+v, want stored", r)
	}
	for i := 1; i < len(ms); i++ {
		var unknown *queue.UnknownOutcomeError
		if !errors.As(res[i].Err, &unknown) {
			t.Errorf("message %d, whose reply was lost: %+v, want an unknown outcome", i, res[i])
		}
	}
	check := queue.New(srv.Client(), queue.Options{})
	for i, m := range ms {
		if ok, err := check.Exists(ctx, "m365", m.ID); err != nil || !ok {
			t.Errorf("message %d not stored (%v)", i, err)
		}
	}
}

// The faults under which an enqueue fails, and what it must answer.
type fault struct {
	name string
	// lost: the script's reply is lost and Redis goes away for longer than
	// the retries (unknown, and stored); away: nothing reaches Redis (not
	// stored); refused: Redis answers every write with an error (not
	// stored); back: the reply is lost and Redis is back at once (the
	// retry learns that it is stored).
	kind string
}

var faults = []fault{
	{"reply lost, then Redis away", "lost"},
	{"Redis away from the start", "away"},
	{"Redis refusing writes", "refused"},
	{"reply lost, Redis back", "back"},
}

// When an attempt reached Redis and Redis went away before answering, and
// stayed away past the retry window, the enqueue says the outcome is
// unknown, and the message is in fact stored; when no attempt reached
// Redis, or Redis answered that it is not stored, the error is a plain one
// and nothing was stored; when Redis is back in time, the retry says it is
// stored. The client is set up as the gateway sets it up: go-redis retries
// a failed command once by itself, and that retry's "connection refused"
// must not pass for the outcome of the attempt that ran.
func TestEnqueueRetryingTellsUnknownFromNotStored(t *testing.T) {
	t.Parallel()
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			q, stored := faultyQueue(t, f.kind)
			m := message("hello\r\n")
			m.ID = queue.NewID(time.Now())
			_, _, err := q.EnqueueRetrying(context.Background(), m, 300*time.Millisecond)
			var unknown *queue.UnknownOutcomeError
			switch isUnknown := errors.As(err, &unknown); f.kind {
			case "lost":
				if !isUnknown {
					t.Fatalf("EnqueueRetrying = %v; want an unknown outcome", err)
				}
			case "back":
				if err != nil {
					t.Fatalf("EnqueueRetrying = %v; want stored", err)
				}
			default:
				if err == nil || isUnknown {
					t.Fatalf("EnqueueRetrying = %v; want a plain error", err)
				}
			}
			if got, want := stored(m.ID), f.kind == "lost" || f.kind == "back"; got != want {
				t.Fatalf("stored = %v, want %v", got, want)
			}
		})
	}
}

// Concurrent enqueues go to Redis together, several to a pipeline; when
// Redis fails with pipelines in flight, every caller whose message is
// stored is told so or told the outcome is unknown, and a caller told
// that its message was not stored (a plain error) is right.
func TestGroupedEnqueuesTellUnknownFromNotStored(t *testing.T) {
	t.Parallel()
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			q, stored := faultyQueue(t, f.kind)
			const n = 64
			ids := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				ids[i] = queue.NewID(time.Now())
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := message(fmt.Sprintf("m%d\r\n", i))
					m.ID = ids[i]
					if i%2 == 0 {
						m.IdempotencyKey = fmt.Sprintf("k%d", i)
					}
					_, _, errs[i] = q.EnqueueRetrying(context.Background(), m, 300*time.Millisecond)
				}()
			}
			wg.Wait()
			unknowns, failures := 0, 0
			for i, err := range errs {
				var unknown *queue.UnknownOutcomeError
				isStored := stored(ids[i])
				switch {
				case err == nil && !isStored:
					t.Errorf("message %d: answered stored, is not", i)
				case errors.As(err, &unknown):
					unknowns++
				case err != nil && isStored:
					t.Errorf("message %d: answered not stored (%v), is stored", i, err)
				}
				if err != nil {
					failures++
				}
			}
			switch f.kind {
			case "lost":
				if unknowns == 0 {
					t.Error("no caller was told that its outcome is unknown: the fault did not happen")
				}
			case "back":
				if failures > 0 {
					t.Errorf("%d callers failed although Redis was back at once", failures)
				}
			default:
				if unknowns > 0 || failures != n {
					t.Errorf("%d callers told the outcome is unknown, %d failed, of %d: want all failed, none unknown",
						unknowns, failures, n)
				}
			}
		})
	}
}

// A batch whose pipeline's replies are lost reports each of its messages
// as of unknown outcome (they are stored), not as not stored; a batch that
// never reached Redis, or whose writes Redis refused, reports each as not
// stored; and one whose replies were lost but Redis is back in time, as
// stored.
func TestEnqueueManyRetryingTellsUnknownFromNotStored(t *testing.T) {
	t.Parallel()
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			q, stored := faultyQueue(t, f.kind)
			ms := []queue.Message{message("a\r\n"), withKey(message("b\r\n"), "kb"), message("c\r\n")}
			for i := range ms {
				ms[i].ID = queue.NewID(time.Now())
			}
			for i, r := range q.EnqueueManyRetrying(context.Background(), ms, 300*time.Millisecond) {
				var unknown *queue.UnknownOutcomeError
				isUnknown := errors.As(r.Err, &unknown)
				switch f.kind {
				case "lost":
					if !isUnknown {
						t.Errorf("message %d: %+v; want an unknown outcome", i, r)
					}
				case "back":
					if r.Err != nil || !r.Created || r.ID != ms[i].ID {
						t.Errorf("message %d: %+v; want stored", i, r)
					}
				default:
					if r.Err == nil || isUnknown {
						t.Errorf("message %d: %+v; want a plain error", i, r)
					}
				}
				if got, want := stored(ms[i].ID), f.kind == "lost" || f.kind == "back"; got != want {
					t.Errorf("message %d: stored = %v, want %v", i, got, want)
				}
			}
		})
	}
}

// faultyQueue is a Queue on a client set up as the gateway's (one retry by
// go-redis itself) that meets fault kind (see fault), on a Redis of its
// own; stored asks that Redis directly whether a message is stored. For
// lost and back the client reaches Redis through a replyEater, armed after
// one message went through (the connection exists and the script is
// loaded); for away its address has nothing listening; for refused every
// write is denied by an ACL (inside scripts too) while reads still work.
func faultyQueue(t *testing.T, kind string) (q *queue.Queue, stored func(id string) bool) {
	t.Helper()
	srv := redistest.Start(t)
	ctx := context.Background()
	check := queue.New(srv.Client(), queue.Options{})
	stored = func(id string) bool {
		t.Helper()
		ok, err := check.Exists(ctx, "m365", id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	p := newReplyEater(t, srv.Addr)
	p.back = kind == "back"
	addr := p.addr()
	if kind == "away" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	q = queue.New(rdb, queue.Options{Retention: time.Hour})
	switch kind {
	case "lost", "back":
		if _, _, err := q.Enqueue(ctx, message("warm-up\r\n")); err != nil {
			t.Fatal(err)
		}
		p.arm()
	case "refused":
		if err := srv.Client().Do(ctx, "ACL", "SETUSER", "default", "-@write").Err(); err != nil {
			t.Fatal(err)
		}
	}
	return q, stored
}
