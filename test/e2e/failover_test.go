package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redisha"
	"github.com/mailgate/mailgate/test/testwait"
)

// Under a steady load of submissions and deliveries, a Sentinel master is
// killed with SIGKILL. Every message answered 202 is delivered (each 202
// waited for a replica), a message is delivered twice only if it was in
// flight at the kill, and nothing is ever answered 500.
func TestSentinelMasterKilledUnderLoad(t *testing.T) {
	t.Parallel()
	s := redisha.StartSentinel(t)
	runFailover(t, config.Redis{Sentinel: config.RedisSentinel{MasterName: redisha.MasterName, Addrs: s.Addrs()}},
		func() (time.Time, time.Time) {
			old := s.KillMaster()
			killedAt := time.Now()
			promoted := s.WaitPromoted(old)
			promotedAt := time.Now()
			// The old master comes back (as an orchestrator would restart
			// it) as the new master's replica, so a 202 can again wait for
			// one.
			s.Rejoin(old, promoted)
			s.WaitSettled(promoted)
			return killedAt, promotedAt
		})
}

// The same with the master of the route's slot in a Redis Cluster.
func TestClusterMasterKilledUnderLoad(t *testing.T) {
	t.Parallel()
	c := redisha.StartCluster(t)
	runFailover(t, config.Redis{Cluster: config.RedisCluster{Addrs: c.Seeds()}},
		func() (time.Time, time.Time) {
			old := c.KillMasterOf("{m365}")
			killedAt := time.Now()
			c.WaitPromoted("{m365}", old)
			promotedAt := time.Now()
			// The old master comes back and joins as the new master's
			// replica by itself (its nodes.conf knows the cluster).
			old.Start()
			c.WaitHealthy()
			return killedAt, promotedAt
		})
}

// submission is one message of the load and what the API answered.
type submission struct {
	seq      int
	statuses []int // every answer, retries included
	id       string
	accepted time.Time // when the 202 came
	// tried is when the attempt that got the last answer started.
	tried   time.Time
	longest time.Duration // the longest attempt
}

// runFailover runs mailgate on rc under load, lets failover break and
// repair Redis, and checks the count. failover returns when the master was
// dead (its process reaped) and when the promotion was seen.
func runFailover(t *testing.T, rc config.Redis, failover func() (killed, promoted time.Time)) {
	sim := exosim.Start(t, simOptions())
	cfg := baseConfig(sim, nil)
	rc.MinReplicasAcked, rc.ReplicaAckTimeout = 1, time.Second
	cfg.Redis = rc
	r := &cfg.Routes[0]
	r.Type = config.RouteSMTP // no pacing: deliveries keep up with the load
	r.Limits = config.Limits{MaxConnections: 3}
	r.SendAs = nil
	e := newEnvConfig(t, sim, cfg)
	e.start(gateway.RoleAll)
	tok := e.token("billing")

	var (
		mu    sync.Mutex
		subs  []*submission
		stop  = make(chan struct{})
		ended = make(chan struct{})
	)
	// Three clients each submit a message every 20 ms or so and
	// retry a 503 with the same Idempotency-Key, as the README tells
	// clients to.
	var next int
	var clients sync.WaitGroup
	for range 3 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for {
				mu.Lock()
				sub := &submission{seq: next}
				next++
				subs = append(subs, sub)
				mu.Unlock()
				for {
					tried := time.Now()
					status, id := submitOnce(t, e.base, tok, sub.seq)
					mu.Lock()
					sub.tried, sub.longest = tried, max(sub.longest, time.Since(tried))
					sub.statuses = append(sub.statuses, status)
					if status == http.StatusAccepted {
						sub.id, sub.accepted = id, time.Now()
					}
					mu.Unlock()
					if status != http.StatusServiceUnavailable {
						break
					}
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	go func() { clients.Wait(); close(ended) }()
	// Steady state first: enough deliveries, and the first of them long
	// enough before the kill that a duplicate of an early one would be
	// caught below.
	testwait.Until(t, 30*time.Second, func() bool {
		msgs := sim.Messages()
		return len(msgs) >= 30 && time.Since(msgs[0].At) > 4*time.Second
	}, "30 deliveries over 4 s before the kill")

	killed, promoted := failover()
	repaired := time.Now()
	// Load goes on until messages are accepted again after the repair.
	acceptedAfter := func(at time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range subs {
			if s.id != "" && s.accepted.After(at) {
				n++
			}
		}
		return n
	}
	testwait.Until(t, 30*time.Second, func() bool { return acceptedAfter(repaired) >= 20 }, "20 messages accepted after the repair")
	close(stop)
	<-ended

	// Count.
	mu.Lock()
	defer mu.Unlock()
	var accepted, refusedOnce, overlapped int
	var recovered time.Time
	var longest time.Duration
	for _, s := range subs {
		for _, st := range s.statuses {
			if st != http.StatusAccepted && st != http.StatusServiceUnavailable {
				t.Fatalf("message %d was answered %d (answers %v): only 202 and 503 are acceptable", s.seq, st, s.statuses)
			}
		}
		longest = max(longest, s.longest)
		if s.id == "" {
			continue // still being retried when the load stopped
		}
		accepted++
		if len(s.statuses) > 1 {
			refusedOnce++
		}
		if len(s.statuses) > 1 || s.tried.Before(promoted) && s.accepted.After(killed) {
			overlapped++ // refused, or its request was open during the outage
		}
		// Recovery: the first 202 to a request sent after the kill.
		if s.tried.After(killed) && (recovered.IsZero() || s.accepted.Before(recovered)) {
			recovered = s.accepted
		}
	}
	// Every 202 is delivered.
	want := map[int]bool{}
	for _, s := range subs {
		if s.id != "" {
			want[s.seq] = true
		}
	}
	seqOf := regexp.MustCompile(`Subject: load (\d+)\r\n`)
	count := func() map[int][]time.Time {
		got := map[int][]time.Time{}
		for _, m := range sim.Messages() {
			if sm := seqOf.FindSubmatch(m.Data); sm != nil {
				n, err := strconv.Atoi(string(sm[1]))
				if err != nil {
					t.Fatalf("subject number %q: %v", sm[1], err)
				}
				got[n] = append(got[n], m.At)
			}
		}
		return got
	}
	testwait.UntilNil(t, 60*time.Second, func() error {
		got := count()
		for seq := range want {
			if len(got[seq]) == 0 {
				return fmt.Errorf("message %d was answered 202 but is not delivered (%d of %d delivered)", seq, len(got), len(want))
			}
		}
		return nil
	})
	// Twice only if in flight at the kill: its first delivery came shortly
	// before the kill (its outcome not yet recorded on a replica) or after.
	dups := 0
	for seq, at := range count() {
		if len(at) < 2 {
			continue
		}
		dups++
		if at[0].Before(killed.Add(-2 * time.Second)) {
			t.Errorf("message %d delivered %d times, first at %s, %s before the kill: it was not in flight",
				seq, len(at), at[0].Format(time.StampMilli), killed.Sub(at[0]))
		}
	}
	if overlapped == 0 {
		t.Fatalf("no submission was refused or open during the failover: the kill did not hit the load")
	}
	t.Logf("%d messages accepted, %d of them only after a 503 and a retry, %d open or refused during the outage; "+
		"all delivered, %d twice (in flight at the kill); longest request %s; promotion seen %s after the kill, "+
		"old master back as a replica after %s; recovery (first 202 to a request sent after the kill): %s",
		accepted, refusedOnce, overlapped, dups, longest.Round(time.Millisecond), promoted.Sub(killed).Round(time.Millisecond),
		repaired.Sub(killed).Round(time.Millisecond), recovered.Sub(killed).Round(time.Millisecond))
}

// submitOnce posts message seq with its own Idempotency-Key and returns the
// status and, for a 202, the id. It never fails the test: the caller counts.
func submitOnce(t *testing.T, base, tok string, seq int) (int, string) {
	body, err := json.Marshal(map[string]any{"to": "ops@contoso.com", "subject": fmt.Sprintf("load %d", seq), "text": "x"})
	if err != nil {
		t.Errorf("submit %d: %v", seq, err)
		return 0, ""
	}
	req, err := http.NewRequest("POST", base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		t.Errorf("submit %d: %v", seq, err)
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", fmt.Sprintf("load-%d", seq))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("submit %d: %v", seq, err)
		return 0, ""
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Errorf("submit %d: %d answer is not JSON: %v", seq, resp.StatusCode, err)
	}
	id, _ := m["id"].(string)
	if resp.StatusCode == http.StatusServiceUnavailable && m["code"] != "queue_unavailable" {
		t.Errorf("submit %d: 503 with code %v", seq, m["code"])
	}
	return resp.StatusCode, id
}

// With min_replicas_acked and no replica to confirm, a submission is not
// answered 202: the 503 says the message may be stored and how to settle
// it, and the retry with the same Idempotency-Key creates no second message.
func TestUnreplicatedSubmissionIs503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSMTP(t, func(c *config.Config) {
		c.Redis.MinReplicasAcked, c.Redis.ReplicaAckTimeout = 1, 50*time.Millisecond
	}))
	if e.redis == nil {
		t.Skip("runs on its own single node") // on the cluster every master has a replica
	}
	e.start(gateway.RoleAPI) // no workers: the messages stay where they were stored
	tok := e.token("billing")
	body, err := json.Marshal(map[string]any{"to": "ops@contoso.com", "subject": "unreplicated", "text": "x"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := e.do("POST", "/v1/messages", "application/json", tok, body, map[string]string{"Idempotency-Key": "once"})
		p := r.json(t)
		if r.status != http.StatusServiceUnavailable || p["code"] != "queue_unavailable" {
			t.Fatalf("submission with no replica: %d %s", r.status, r.body)
		}
		for _, want := range []string{"may be stored but is not yet replicated", "0 of 1 replicas", "same Idempotency-Key"} {
			if d, _ := p["detail"].(string); !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(d) {
				t.Errorf("detail lacks %q: %s", want, d)
			}
		}
	}
	if n := e.redis.Client().ZCard(t.Context(), "mailgate:{m365}:ready").Val(); n != 1 {
		t.Fatalf("%d messages queued after two tries with one key, want 1 (stored once, not yet confirmed)", n)
	}

	// A batch is not answered 200 with ids either: nothing of it is
	// confirmed, and the answer says some of it may be stored.
	r, _ := e.batch(tok, []map[string]any{
		{"to": "ops@contoso.com", "subject": "batch one", "text": "x", "idempotency_key": "b1"},
		{"to": "ops@contoso.com", "subject": "batch two", "text": "x", "idempotency_key": "b2"},
	}, nil)
	if p := r.json(t); r.status != http.StatusServiceUnavailable || p["code"] != "queue_unavailable" ||
		!strings.Contains(p["detail"].(string), "2 may be stored but are not yet replicated") {
		t.Fatalf("batch with no replica: %d %s", r.status, r.body)
	}

	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := `mailgate_submissions_total{app="billing",result="not_replicated"} 4`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %s", want)
	}

	// The SMTP door gives no 250 either, and does not claim the message
	// was not stored.
	c := dialSMTP(t, e.smtpAddr, listedIP)
	c.send("EHLO scanner.lan", 250)
	c.send("MAIL FROM:<scanner@alerts.contoso.com>", 250)
	c.send("RCPT TO:<ops@contoso.com>", 250)
	c.send("DATA", 354)
	code, reply := c.data(message("Scanner <scanner@alerts.contoso.com>", "ops@contoso.com", "unreplicated"))
	if code != 451 || !strings.HasPrefix(reply, "4.3.0 ") || !strings.Contains(reply, "may be stored but is not yet replicated") {
		t.Fatalf("SMTP with no replica: %d %s, want 451 4.3.0 saying it may be stored", code, reply)
	}
}
