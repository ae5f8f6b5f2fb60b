package queue_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testclock"
)

// replyEater is a TCP proxy in front of a real Redis that, once armed,
// passes a command on but never returns its reply, and from then on
// refuses every new connection: Redis ran the command and went away
// before the client heard of it.
type replyEater struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	armed bool // eat the next reply and then refuse everyone
	dead  bool
}

func newReplyEater(t *testing.T, target string) *replyEater {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyEater{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *replyEater) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		dead := p.dead
		p.mu.Unlock()
		if dead {
			c.Close() // as good as refused: the client's command never arrives
			continue
		}
		go p.pipe(c)
	}
}

func (p *replyEater) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, c) }()
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		eat := p.armed
		if eat {
			p.armed, p.dead = false, true
		}
		p.mu.Unlock()
		if eat {
			return // the reply is dropped with the connection
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *replyEater) arm()         { p.mu.Lock(); p.armed = true; p.mu.Unlock() }
func (p *replyEater) addr() string { return p.ln.Addr().String() }

// When an attempt reached Redis and Redis went away before answering, and
// stayed away past the retry window, the enqueue says the outcome is
// unknown, and the message is in fact stored; when no attempt reached
// Redis, the error is a plain one and nothing was stored.
func TestEnqueueRetryingTellsUnknownFromNotStored(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clock := testclock.New(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name    string
		unknown bool
	}{
		{"reply lost, then Redis away", true},
		{"Redis away from the start", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newReplyEater(t, srv.Addr)
			addr := p.addr()
			if !tc.unknown {
				// Nothing listens there: no command can reach Redis.
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr = ln.Addr().String()
				ln.Close()
			}
			rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
			t.Cleanup(func() { rdb.Close() })
			q := queue.New(rdb, queue.Options{Retention: time.Hour, Now: clock.Now})
			if tc.unknown {
				// One message through the proxy first: the connection
				// exists and the scripts are loaded before the fault.
				if _, _, err := q.Enqueue(context.Background(), message("warm-up\r\n")); err != nil {
					t.Fatal(err)
				}
				p.arm()
			}
			m := message("hello\r\n")
			m.ID = queue.NewID(clock.Now())
			_, _, err := q.EnqueueRetrying(context.Background(), m, 300*time.Millisecond)
			var unknown *queue.UnknownOutcomeError
			if err == nil || errors.As(err, &unknown) != tc.unknown {
				t.Fatalf("EnqueueRetrying = %v; want an error, unknown outcome %v", err, tc.unknown)
			}
			stored, err := queue.New(srv.Client(), queue.Options{Now: clock.Now}).Exists(context.Background(), "m365", m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored != tc.unknown {
				t.Fatalf("stored = %v, want %v", stored, tc.unknown)
			}
		})
	}
}
