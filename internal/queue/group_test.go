package queue

import (
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

	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

// heldProxy forwards to Redis but holds back every reply until released,
// so a test can keep pipelines in flight as long as it needs.
type heldProxy struct {
	ln      net.Listener
	target  string
	release chan struct{}
	once    sync.Once
}

// open lets the replies through, from now on.
func (p *heldProxy) open() { p.once.Do(func() { close(p.release) }) }

func newHeldProxy(t *testing.T, target string) *heldProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &heldProxy{ln: ln, target: target, release: make(chan struct{})}
	t.Cleanup(func() { ln.Close(); p.open() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(t, c)
		}
	}()
	return p
}

func (p *heldProxy) pipe(t *testing.T, c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		t.Errorf("proxy: %v", err)
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, c) }()
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			<-p.release
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pipelineCounter counts the pipelines of enqueue scripts a client sends.
type pipelineCounter struct{ n atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "evalsha" {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

func testMessage(i int) Message {
	return Message{ID: NewID(time.Now()), App: "monitoring", Route: "m365", From: "alerts@contoso.com",
		Recipients: []string{"ops@contoso.com"}, Subject: "Disk full", Body: []byte(fmt.Sprintf("m%d\r\n", i))}
}

// While groupInFlight pipelines of a route are in flight, more callers
// wait and are then sent together, as one pipeline; a waiting caller that
// gives up is taken out before anything of it is sent, and is told so
// (neverSent), and its message is not stored.
func TestGrouperSendsWaitingCallersTogether(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	if err := enqueueScript.Load(context.Background(), srv.Client()).Err(); err != nil {
		t.Fatal(err)
	}
	p := newHeldProxy(t, srv.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: p.ln.Addr().String(), PoolSize: 64})
	t.Cleanup(func() { rdb.Close() })
	pipes := &pipelineCounter{}
	rdb.AddHook(pipes)
	q := New(rdb, Options{Retention: time.Hour})
	state := func() (inFlight, waiting int) {
		q.group.mu.Lock()
		defer q.group.mu.Unlock()
		if r := q.group.routes["m365"]; r != nil {
			return r.inFlight, len(r.waiting)
		}
		return 0, 0
	}

	const more = 20
	var wg sync.WaitGroup
	errs := make([]error, groupInFlight+more)
	ms := make([]Message, len(errs))
	for i := range ms {
		ms[i] = testMessage(i)
	}
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = q.Enqueue(context.Background(), ms[i])
		}()
	}
	for i := range groupInFlight {
		start(i)
	}
	testwait.Until(t, 5*time.Second, func() bool { n, _ := state(); return n == groupInFlight },
		"%d pipelines in flight", groupInFlight)
	for i := range more {
		start(groupInFlight + i)
	}
	testwait.Until(t, 5*time.Second, func() bool { _, n := state(); return n == more }, "%d callers waiting", more)

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := testMessage(-1)
	done := make(chan error, 1)
	go func() { _, _, err := q.Enqueue(ctx, gaveUp); done <- err }()
	testwait.Until(t, 5*time.Second, func() bool { _, n := state(); return n == more+1 }, "the last caller waiting")
	cancel()
	if err := <-done; !errors.Is(err, errWithdrawn) || !neverSent(err) {
		t.Fatalf("a caller that gave up while waiting: %v, want a withdrawn (never sent) error", err)
	}

	p.open()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if got, want := pipes.n.Load(), int64(groupInFlight+1); got != want {
		t.Errorf("%d pipelines sent, want %d: %d alone, then the %d that waited together", got, want, groupInFlight, more)
	}
	if n, w := state(); n != 0 || w != 0 {
		t.Errorf("after the last reply: %d in flight, %d waiting", n, w)
	}
	check := New(srv.Client(), Options{})
	for i, m := range ms {
		if ok, err := check.Exists(context.Background(), "m365", m.ID); err != nil || !ok {
			t.Errorf("message %d not stored (%v)", i, err)
		}
	}
	if ok, err := check.Exists(context.Background(), "m365", gaveUp.ID); err != nil || ok {
		t.Errorf("the withdrawn message: stored %v (%v), want not stored", ok, err)
	}
}
