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

// The replies with which Redis refuses a command before running it say
// that the script did not run, as real replies read by go-redis; a
// script's own error reply does not (it may come after some writes), and
// only errors that are not Redis replies ask a cluster client for a new
// layout (unless the node client was used, which follows no MOVED).
func TestRefusalRepliesAreNotRun(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	reply := func(msg string) error {
		t.Helper()
		err := rdb.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, msg).Err()
		if err == nil {
			t.Fatalf("no error for %q", msg)
		}
		return err
	}
	for _, msg := range []string{"MOVED 1234 127.0.0.1:7001", "ASK 1234 127.0.0.1:7001",
		"CLUSTERDOWN Hash slot not served", "TRYAGAIN Multiple keys request during rehashing of slot",
		"LOADING Redis is loading the dataset in memory", "NOSCRIPT No matching script. Please use EVAL."} {
		err := reply(msg)
		if !neverSent(err) {
			t.Errorf("%q taken for a script that may have run", msg)
		}
		if staleLayout(err, false) || !staleLayout(err, true) {
			t.Errorf("%q: stale layout %v through the cluster client, %v through a node client; want false, true",
				msg, staleLayout(err, false), staleLayout(err, true))
		}
	}
	for _, msg := range []string{"OOM command not allowed when used memory > 'maxmemory'.", "ERR user_script:1: boom", "MOVEDX 1"} {
		if err := reply(msg); neverSent(err) {
			t.Errorf("%q taken for a script that did not run", msg)
		}
	}
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	if !staleLayout(dial, false) || !staleLayout(io.EOF, false) {
		t.Error("a refused dial or a broken connection does not ask for a new layout")
	}
	if staleLayout(nil, true) || staleLayout(fmt.Errorf("%w: %w", errWithdrawn, context.Canceled), true) ||
		staleLayout(&NotReplicatedError{ID: "x", Want: 1}, true) {
		t.Error("no error, a withdrawn call or too few replicas asks for a new layout")
	}
}
