// Package bench measures mailgate's throughput and memory: workers
// delivering from a real redis-server to the Exchange Online simulator over
// STARTTLS and AUTH, the submission API on loopback, and a load test of the
// whole process (load_test.go, run only with -load).
//
// Benchmarks report figures (msgs/s, submissions/s, B/op, peak heap); they
// never assert timings, because the machines they run on are shared. Only
// correctness fails them: a message not delivered, delivered twice, or a
// 5xx other than 503.
//
// The simulator runs with its limits effectively off and the route with more
// connections than Exchange Online allows one mailbox (3): what is measured
// is mailgate's own cost per message, not Exchange's throttling.
package bench

import (
	"context"
	"fmt"
	"net"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/delivery"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redistest"
)

const (
	signingKey = "bench-signing-key-0123456789abcdef0123456789"
	relay      = "relay@contoso.com"
	relayPass  = "relay-password"
	sender     = "alerts@alerts.contoso.com"
	appID      = "bench"
	routeName  = "m365"
)

// setup is what every benchmark needs: Redis, the simulator and a
// configuration pointing at both.
type setup struct {
	redis *redistest.Server
	sim   *exosim.Sim
	cfg   *config.Config
}

// unlimitedSim is a tenant with one relay mailbox and Exchange's limits
// raised out of the way.
func unlimitedSim() exosim.Options {
	return exosim.Options{
		Mailboxes:                map[string]string{relay: relayPass},
		SendAs:                   map[string][]string{relay: {"*@alerts.contoso.com"}},
		MaxConnectionsPerMailbox: 1 << 20,
		MessagesPerMinute:        1 << 30,
		RecipientsPerDay:         1 << 40,
		MaxMessageBytes:          64 << 20,
	}
}

// newSetup starts Redis and the simulator and configures a route of type
// smtp-auth (LOGIN, STARTTLS, the simulator's CA) with workers connections
// and the given idle timeout. A tiny idleTimeout closes the connection
// before every message: one TCP connection, TLS handshake and AUTH each.
func newSetup(tb testing.TB, workers int, idleTimeout time.Duration) *setup {
	tb.Helper()
	srv := redistest.Start(tb)
	sim := exosim.Start(tb, unlimitedSim())
	cfg := &config.Config{
		Listen: "127.0.0.1:0",
		Redis:  config.Redis{URL: srv.URL()},
		Auth:   config.Auth{SigningKey: signingKey},
		Delivery: config.Delivery{
			IdleTimeout: idleTimeout,
			// Defaults otherwise (lease 5m, poll 200ms): the bench should
			// see what production sees.
			ConnectTimeout: 10 * time.Second, CommandTimeout: 30 * time.Second, HelloName: "mailgate.bench",
		},
		Routes: []config.Route{{
			Name: routeName, Type: config.RouteSMTPAuth, Host: sim.Host(), Port: sim.Port(),
			TLS:    config.RouteTLS{Mode: config.TLSStartTLS, CAFile: sim.CAFile()},
			Auth:   config.RouteAuth{Mechanism: config.MechLogin, Username: relay, Password: relayPass},
			SendAs: []string{"*@alerts.contoso.com"},
			Limits: config.Limits{MaxConnections: workers, MessagesPerMinute: 1 << 30, RecipientsPerDay: 1 << 40},
		}},
		Apps: []config.App{{
			ID: appID, Route: routeName,
			From:            config.AppFrom{Default: "Alerts <" + sender + ">", Allowed: []string{"*@alerts.contoso.com"}},
			MaxMessageBytes: 25 << 20,
		}},
	}
	cfg.WithDefaults()
	// The limits are above Exchange Online's on purpose (see the package
	// comment); every other problem is a mistake in this file.
	var problems config.Problems
	for _, p := range cfg.Validate() {
		if !strings.Contains(p.Key, ".limits.") {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		tb.Fatalf("benchmark configuration is invalid:\n%v", problems)
	}
	return &setup{redis: srv, sim: sim, cfg: cfg}
}

// outcomes counts the outcomes workers record and wakes a waiter on each.
type outcomes struct {
	mu      sync.Mutex
	sent    int
	other   map[string]int // status -> count, for anything but sent
	changed chan struct{}
}

func newOutcomes() *outcomes {
	return &outcomes{other: map[string]int{}, changed: make(chan struct{})}
}

func (o *outcomes) hooks() *delivery.Hooks {
	return &delivery.Hooks{Done: func(_ *queue.Job, out queue.Outcome) {
		o.mu.Lock()
		if out.Status == queue.StatusSent {
			o.sent++
		} else {
			o.other[out.Status+": "+out.Detail]++
		}
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	}}
}

// wait blocks until n messages were sent or timeout passes, and returns
// the counts.
func (o *outcomes) wait(n int, timeout time.Duration) (sent int, other map[string]int, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		sent, changed := o.sent, o.changed
		other := make(map[string]int, len(o.other))
		for k, v := range o.other {
			other[k] = v
		}
		o.mu.Unlock()
		if sent >= n {
			return sent, other, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return sent, other, false
		}
	}
}

// gatewayRun is a built gateway that is not running yet.
type gatewayRun struct {
	g    *gateway.Gateway
	base string // http://addr when the role serves the API
}

// build makes a gateway of role on s; nothing runs until start.
func (s *setup) build(tb testing.TB, role string, hooks *delivery.Hooks) *gatewayRun {
	tb.Helper()
	return s.buildWith(tb, role, hooks, nil)
}

// buildWith is build with the gateway's Redis round trips counted by rt.
func (s *setup) buildWith(tb testing.TB, role string, hooks *delivery.Hooks, rt *roundTrips) *gatewayRun {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr, PoolSize: 64})
	tb.Cleanup(func() {
		if err := rdb.Close(); err != nil {
			tb.Errorf("close Redis client: %v", err)
		}
	})
	if rt != nil {
		rdb.AddHook(rt)
	}
	var ln net.Listener
	if role != gateway.RoleWorker {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := gateway.New(gateway.Options{Config: s.cfg, Role: role, Listener: ln,
		Redis: rdb, ShutdownTimeout: 30 * time.Second, WorkerHooks: hooks})
	if err != nil {
		tb.Fatal(err)
	}
	r := &gatewayRun{g: g}
	if ln != nil {
		r.base = "http://" + g.Addr()
	}
	return r
}

// start runs the gateway until the benchmark ends (or stop is called).
func (r *gatewayRun) start(tb testing.TB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.g.Run(ctx); err != nil {
			tb.Errorf("gateway: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	tb.Cleanup(stop)
	return stop
}

// appToken issues a token for the benchmark's app.
func (r *gatewayRun) appToken(tb testing.TB) string {
	tb.Helper()
	raw, _, err := r.g.Tokens().Issue(appID, token.ScopeApp, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// loremText is about 1.5 KB of plain text, so that a rendered message
// (headers, text/plain in quoted-printable) is about 2 KB: a typical alert.
var loremText = strings.Repeat("The nightly backup of db1 finished with warnings; "+
	"see the attached log for details and the dashboard for trends.\n", 13)

// renderMessage renders a typical ~2 KB alert with id as its Message-ID.
func renderMessage(id string, n int) (queue.Message, error) {
	m, err := compose.Build(compose.Input{
		From:    "Alerts <" + sender + ">",
		To:      []string{"ops@contoso.com"},
		Subject: fmt.Sprintf("Backup report %d", n),
		Text:    loremText,
		Headers: map[string]string{"X-Ticket": fmt.Sprint(4000 + n)},
	}, compose.Options{Now: time.Now(), MessageIDLocal: id})
	if err != nil {
		return queue.Message{}, fmt.Errorf("render message %d: %w", n, err)
	}
	return queue.Message{ID: id, App: appID, Route: routeName,
		From: m.From.Address, HeaderFrom: m.From.String(), Recipients: m.Recipients, To: m.To,
		Subject: m.Subject, MessageID: m.MessageID, Body: m.Bytes}, nil
}

// enqueue stores n rendered messages with a few concurrent callers and
// returns the average body size.
func enqueue(tb testing.TB, q *queue.Queue, n int) (avgBytes int) {
	tb.Helper()
	const parallel = 8
	var total atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				m, err := renderMessage(queue.NewID(time.Now()), i)
				if err == nil {
					total.Add(int64(len(m.Body)))
					_, _, err = q.Enqueue(context.Background(), m)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("enqueue: %v", err)
	}
	if n == 0 {
		return 0
	}
	return int(total.Load()) / n
}

// heapSampler records the peak of live heap objects (runtime/metrics,
// which does not stop the world, unlike ReadMemStats) until stopped.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

const heapObjects = "/memory/classes/heap/objects:bytes"

func heapNow() uint64 {
	s := []metrics.Sample{{Name: heapObjects}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler(every time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	h.peak.Store(heapNow())
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				if v := heapNow(); v > h.peak.Load() {
					h.peak.Store(v)
				}
			}
		}
	}()
	return h
}

// Stop ends sampling and returns the peak in bytes.
func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	if v := heapNow(); v > h.peak.Load() {
		h.peak.Store(v)
	}
	return h.peak.Load()
}

// roundTrips counts what the gateway sends to Redis, one round trip per
// command or pipeline, by command name and, for scripts, their first key's
// last part (ready: claim, inflight: complete or extend, ...).
type roundTrips struct {
	mu     sync.Mutex
	total  int
	byName map[string]int
}

func (r *roundTrips) reset() {
	r.mu.Lock()
	r.total, r.byName = 0, map[string]int{}
	r.mu.Unlock()
}

func (r *roundTrips) snapshot() (int, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.byName))
	for k, v := range r.byName {
		m[k] = v
	}
	return r.total, m
}

func (r *roundTrips) count(cmds ...redis.Cmder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName == nil {
		r.byName = map[string]int{}
	}
	r.total++
	for _, c := range cmds {
		name := c.Name()
		if args := c.Args(); (name == "evalsha" || name == "eval") && len(args) > 3 {
			key := fmt.Sprint(args[3])
			if i := strings.LastIndex(key, "}:"); i >= 0 {
				key = key[i+2:]
			}
			if i := strings.IndexByte(key, ':'); i >= 0 {
				key = key[:i]
			}
			name += "(" + key + ")"
		}
		r.byName[name]++
	}
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.count(cmd)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.count(cmds...)
		return next(ctx, cmds)
	}
}
