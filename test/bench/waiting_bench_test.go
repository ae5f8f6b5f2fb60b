package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/delivery"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testwait"
)

// BenchmarkWaitingBacklog measures what a backlog waiting for one mailbox's
// limit costs: 3,000 messages from alice on a "{from}" route (XOAUTH2, each
// message authenticates as its From mailbox, 30 messages a minute each, 3
// workers) while they go out one every 2 s. It reports the Redis commands
// the server ran per second in that state (scripts' own commands included)
// and per worker, and how long a message from bob, queued behind the
// backlog, took to be sent. Run it with -benchtime 1x: each iteration is
// one such measurement of about 6 s.
func BenchmarkWaitingBacklog(b *testing.B) {
	for range b.N {
		benchWaiting(b)
	}
}

func benchWaiting(b *testing.B) {
	b.StopTimer()
	const (
		backlog  = 3000
		clientID = "bench-client"
		secret   = "bench-secret"
		alice    = "alice@contoso.com"
		bob      = "bob@contoso.com"
	)
	opts := unlimitedSim()
	opts.Mailboxes = map[string]string{alice: "", bob: ""}
	opts.SendAs = nil
	s := newSetup(b, 3, time.Hour)
	s.sim = exosim.Start(b, opts)
	s.sim.RegisterClientSecret(clientID, secret)
	r := &s.cfg.Routes[0]
	r.Host, r.Port, r.TLS.CAFile = s.sim.Host(), s.sim.Port(), s.sim.CAFile()
	r.Auth = config.RouteAuth{Mechanism: config.MechXOAUTH2, Username: config.FromMailbox, OAuth: config.OAuth{
		TenantID: s.sim.TenantID(), ClientID: clientID, TokenURL: s.sim.TokenURL(), ClientSecret: secret}}
	r.Mailboxes = []string{alice, bob}
	r.SendAs = nil
	r.Limits = config.Limits{MaxConnections: 3, MessagesPerMinute: 30, RecipientsPerDay: 10000}
	s.cfg.Apps[0].From = config.AppFrom{Default: alice, Allowed: []string{alice, bob}}
	s.cfg.WithDefaults()
	if problems := s.cfg.Validate(); len(problems) > 0 {
		b.Fatalf("benchmark configuration is invalid:\n%v", config.Problems(problems))
	}

	var mu sync.Mutex
	aliceSent := 0
	bobSent := make(chan time.Time, 1)
	hooks := &delivery.Hooks{Done: func(j *queue.Job, o queue.Outcome) {
		if o.Status != queue.StatusSent {
			if o.Status == queue.StatusFailed {
				b.Errorf("%s failed: %s", j.ID, o.Detail)
			}
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if j.From == bob {
			bobSent <- time.Now()
		} else {
			aliceSent++
		}
	}}
	run := s.build(b, gateway.RoleWorker, hooks)
	q := run.g.Queue()
	ctx := context.Background()
	for i := 0; i < backlog; i++ {
		m := renderFrom(b, alice, i)
		if _, _, err := q.Enqueue(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	sent := func() int { mu.Lock(); defer mu.Unlock(); return aliceSent }
	waitFor := func(n int) {
		if !testwait.Poll(30*time.Second, func() bool { return sent() >= n }) {
			b.Fatalf("alice's messages: %d sent, want %d", sent(), n)
		}
	}
	run.start(b)
	waitFor(2)

	rdb := s.redis.Client()
	cmds0, _ := redisCalls(b, rdb)
	start, from := time.Now(), sent()
	b.StartTimer()
	waitFor(from + 2)
	b.StopTimer()
	cmds1, byName := redisCalls(b, rdb)
	elapsed := time.Since(start)
	perSecond := float64(cmds1-cmds0) / elapsed.Seconds()

	m := renderFrom(b, bob, backlog)
	queued := time.Now()
	if _, _, err := q.Enqueue(ctx, m); err != nil {
		b.Fatal(err)
	}
	var bobMS float64
	select {
	case at := <-bobSent:
		bobMS = float64(at.Sub(queued).Microseconds()) / 1000
	case <-time.After(30 * time.Second):
		b.Fatal("bob's message was not sent within 30 s")
	}
	b.ReportMetric(perSecond, "redis-cmds/s")
	b.ReportMetric(perSecond/3, "redis-cmds/s/worker")
	b.ReportMetric(float64(sent()-from)/elapsed.Seconds(), "alice-msgs/s")
	b.ReportMetric(bobMS, "other-mailbox-ms")
	b.Logf("%d commands in %s while %d waited: %v", cmds1-cmds0, elapsed.Round(time.Millisecond), backlog, fmt.Sprint(byName))
}

// renderFrom renders a typical alert from mailbox (envelope and header).
func renderFrom(tb testing.TB, mailbox string, n int) queue.Message {
	tb.Helper()
	id := queue.NewID(time.Now())
	m, err := compose.Build(compose.Input{From: mailbox, To: []string{"ops@contoso.com"},
		Subject: fmt.Sprintf("Backup report %d", n), Text: loremText},
		compose.Options{Now: time.Now(), MessageIDLocal: id})
	if err != nil {
		tb.Fatal(err)
	}
	return queue.Message{ID: id, App: appID, Route: routeName,
		From: m.From.Address, HeaderFrom: m.From.String(), Recipients: m.Recipients, To: m.To,
		Subject: m.Subject, MessageID: m.MessageID, Body: m.Bytes}
}
