package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/mail"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/testwait"
)

// The load test runs only when asked for: it takes a minute and a few
// hundred MB. Its flags are prefixed with load. because go test owns -n.
var (
	loadRun     = flag.Bool("load", false, "run TestLoad")
	loadN       = flag.Int("load.n", 2000, "submissions in all")
	loadC       = flag.Int("load.c", 32, "concurrent clients")
	loadBig     = flag.Int("load.big", 5, "how many of the submissions carry a 10 MB attachment")
	loadWorkers = flag.Int("load.workers", 8, "delivery workers (route limits.max_connections) of the in-process mailgate")
	loadURL     = flag.String("load.url", "", "base URL of a running mailgate to load instead of starting one (e.g. http://127.0.0.1:8080)")
	loadToken   = flag.String("load.token", "", "app token for -load.url")
	loadTo      = flag.String("load.to", "ops@contoso.com", "recipient, for -load.url (the app's policy must allow it)")
	loadPID     = flag.Int("load.pid", 0, "process id of the mailgate behind -load.url, whose peak RSS is then reported too")
	loadTimeout = flag.Duration("load.timeout", 5*time.Minute, "how long to wait for every accepted message to be delivered")
)

// submission is what one client request got.
type submission struct {
	big     bool
	status  int // 0: transport error
	err     error
	id      string
	latency time.Duration
}

// TestLoad submits -load.n messages from -load.c concurrent clients, of
// which -load.big carry a 10 MB attachment, waits until every accepted
// message is delivered, and prints a summary. By default it starts
// everything in this process: redis-server, the simulator (limits off) and
// one mailgate in role all; with -load.url it loads a running mailgate and
// follows each message through the status API instead (duplicates cannot be
// seen from there).
//
// It fails on correctness only: a 202 never delivered (a loss), a message
// delivered twice, a 5xx other than 503 (503 means "nothing stored, retry"),
// or a transport error (on loopback, a connection the server broke).
//
//	go test ./test/bench -run TestLoad -v -load [-load.n 2000 -load.c 32 -load.big 5]
func TestLoad(t *testing.T) {
	if !*loadRun {
		t.Skip("load test: run with -load (see test/bench/README.md)")
	}
	n, big := *loadN, min(*loadBig, *loadN)
	base, tok := *loadURL, *loadToken
	var s *setup
	var out *outcomes
	if base == "" {
		// Connection reuse as in production (idle_timeout 30s).
		s = newSetup(t, *loadWorkers, 30*time.Second)
		out = newOutcomes()
		r := s.build(t, gateway.RoleAll, out.hooks())
		r.start(t)
		base, tok = r.base, r.appToken(t)
	} else if tok == "" {
		t.Fatal("-load.url needs -load.token")
	}
	url := strings.TrimSuffix(base, "/") + "/v1/messages"

	small := mustJSON(t, map[string]any{"to": *loadTo, "subject": "Load test", "text": loremText[:600]})
	var large []byte
	if big > 0 {
		large = largeJSONTo(t, *loadTo, bigAttachment())
	}
	isBig := make([]bool, n)
	for i := range big {
		isBig[i*n/big] = true // spread through the run
	}

	heap := startHeapSampler(5 * time.Millisecond)
	client := apiClient()
	results := make([]submission, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *loadC {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				body := small
				if isBig[i] {
					body = large
				}
				t0 := time.Now()
				code, resp, err := post(client, url, tok, "application/json", body)
				res := submission{big: isBig[i], status: code, err: err, latency: time.Since(t0)}
				if code == http.StatusAccepted {
					var v struct{ ID string }
					if err := json.Unmarshal(resp, &v); err != nil || v.ID == "" {
						t.Errorf("202 without a message id (%v): %s", err, resp)
					}
					res.id = v.ID
				}
				results[i] = res
			}
		}()
	}
	wg.Wait()
	submitWall := time.Since(start)
	sentBySubmitEnd := -1
	if out != nil {
		out.mu.Lock()
		sentBySubmitEnd = out.sent
		out.mu.Unlock()
	}

	accepted := map[string]bool{}
	byStatus := map[string]int{}
	var lat, latBig []time.Duration
	var transport []string
	for _, r := range results {
		switch {
		case r.err != nil:
			byStatus["transport error"]++
			if len(transport) < 5 {
				transport = append(transport, r.err.Error())
			}
		case r.status == http.StatusAccepted:
			accepted[r.id] = true
			byStatus["202"]++
		default:
			byStatus[strconv.Itoa(r.status)]++
		}
		if r.err == nil {
			if r.big {
				latBig = append(latBig, r.latency)
			} else {
				lat = append(lat, r.latency)
			}
		}
	}

	// Deliveries.
	delivered := map[string]int{} // queue id -> times delivered
	unknown := 0
	var deliverWall time.Duration
	duplicatesKnown := s != nil
	if s != nil {
		sent, other, ok := out.wait(len(accepted), *loadTimeout)
		deliverWall = time.Since(start)
		if !ok || len(other) > 0 {
			t.Logf("after %v: %d sent, other outcomes %v", *loadTimeout, sent, other)
		}
		for _, m := range s.sim.Messages() {
			id, ok := queueID(m.Data)
			if !ok || !accepted[id] {
				unknown++
				continue
			}
			delivered[id]++
		}
	} else {
		delivered = followStatus(t, client, strings.TrimSuffix(base, "/"), tok, accepted, *loadC, *loadTimeout)
		deliverWall = time.Since(start)
	}
	peakHeap := heap.Stop()

	var losses, duplicates int
	var lost []string
	for id := range accepted {
		switch c := delivered[id]; {
		case c == 0:
			losses++
			if len(lost) < 5 {
				lost = append(lost, id)
			}
		case c > 1:
			duplicates += c - 1
		}
	}
	bad5xx := 0
	for k, v := range byStatus {
		if c, err := strconv.Atoi(k); err == nil && c >= 500 && c != http.StatusServiceUnavailable {
			bad5xx += v
		}
	}

	// Summary.
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	var werr error // the first failed write; the summary is checked once, at Flush
	printf := func(format string, a ...any) {
		if _, err := fmt.Fprintf(w, format, a...); err != nil && werr == nil {
			werr = err
		}
	}
	row := func(k string, v ...any) { printf("%s\t%s\n", k, fmt.Sprint(v...)) }
	printf("\nload test, %s, %d CPUs\t\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), numCPU())
	row("target", base)
	row("requests", fmt.Sprintf("%d (%d with a 10 MB attachment), %d concurrent clients", n, big, *loadC))
	row("answers", statusText(byStatus))
	row("submission time", submitWall.Round(time.Millisecond))
	row("submission throughput", fmt.Sprintf("%.0f requests/s", float64(n)/submitWall.Seconds()))
	row("latency (small)", percentiles(lat))
	if len(latBig) > 0 {
		row("latency (10 MB)", percentiles(latBig))
	}
	row("accepted (202)", len(accepted))
	row("delivered", len(accepted)-losses)
	if sentBySubmitEnd >= 0 {
		row("delivered when submission ended", sentBySubmitEnd)
	}
	if duplicatesKnown {
		row("duplicates (by Message-ID)", duplicates)
		row("unknown deliveries", unknown)
	} else {
		row("duplicates (by Message-ID)", "n/a (status API only)")
	}
	row("losses (202, never delivered)", losses)
	row("delivery throughput", fmt.Sprintf("%.0f msgs/s (first submission to last delivery: %v)",
		float64(len(accepted))/deliverWall.Seconds(), deliverWall.Round(time.Millisecond)))
	row("peak Go heap (this process)", mb(peakHeap))
	row("peak RSS (VmHWM, this process)", procStatus("self", "VmHWM"))
	if *loadPID > 0 {
		row(fmt.Sprintf("peak RSS of mailgate (VmHWM, pid %d)", *loadPID), procStatus(strconv.Itoa(*loadPID), "VmHWM"))
	}
	if s != nil {
		row("redis-server peak memory", redisPeak(t, s))
	}
	if err := errors.Join(werr, w.Flush()); err != nil {
		t.Errorf("summary: %v", err)
	}

	if losses > 0 {
		t.Errorf("%d accepted messages were never delivered, e.g. %v", losses, lost)
	}
	if duplicates > 0 {
		t.Errorf("%d duplicate deliveries", duplicates)
	}
	if bad5xx > 0 {
		t.Errorf("%d answers were a 5xx other than 503: %v", bad5xx, byStatus)
	}
	if len(transport) > 0 {
		t.Errorf("%d transport errors, e.g. %v", byStatus["transport error"], transport)
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// largeJSONTo is largeJSON addressed to to.
func largeJSONTo(tb testing.TB, to string, content []byte) []byte {
	tb.Helper()
	var v map[string]any
	if err := json.Unmarshal(largeJSON(tb, content), &v); err != nil {
		tb.Fatal(err)
	}
	v["to"] = to
	return mustJSON(tb, v)
}

// queueID reads the Message-ID of a delivered message; mailgate makes its
// local part the message's queue id.
func queueID(data []byte) (string, bool) {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return "", false
	}
	local, _, ok := strings.Cut(strings.Trim(m.Header.Get("Message-Id"), "<> "), "@")
	return local, ok
}

// followStatus polls GET /v1/messages/{id} for every accepted message until
// it is sent or failed, or timeout passes, and returns the sent ones (as
// delivered once: the status API cannot show duplicates).
func followStatus(t *testing.T, c *http.Client, base, tok string, ids map[string]bool, parallel int, timeout time.Duration) map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	todo := make(chan string, len(ids))
	for id := range ids {
		todo <- id
	}
	close(todo)
	var mu sync.Mutex
	out := map[string]int{}
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range todo {
				// Poll, not Until: this goroutine may not fail the test, and
				// a message still pending at the deadline is reported by the
				// caller as not delivered.
				testwait.PollEvery(time.Until(deadline), 200*time.Millisecond, func() bool {
					st := messageStatus(ctx, c, base, tok, id)
					if st == "sent" {
						mu.Lock()
						out[id] = 1
						mu.Unlock()
					}
					return st == "sent" || st == "failed" || ctx.Err() != nil
				})
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Logf("status polling stopped after %v", timeout)
	}
	return out
}

func messageStatus(ctx context.Context, c *http.Client, base, tok, id string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/messages/"+id, nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "" // no status yet: the caller asks again
	}
	return v.Status
}

func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	slices.Sort(d)
	p := func(q float64) time.Duration {
		return d[min(len(d)-1, int(q*float64(len(d))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v  (n=%d)", p(0.50), p(0.90), p(0.99), d[len(d)-1].Round(10*time.Microsecond), len(d))
}

func statusText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func mb(b uint64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

// procStatus reads one field of /proc/<pid>/status (pid "self": this
// process), "n/a" off Linux.
func procStatus(pid, field string) string {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return "n/a"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return strings.TrimSpace(v)
			}
			return fmt.Sprintf("%d MB", kb>>10)
		}
	}
	return "n/a"
}

func redisPeak(tb testing.TB, s *setup) string {
	info, err := s.redis.Client().Info(tb.Context(), "memory").Result()
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory_peak_human:"); ok {
			return v
		}
	}
	return "n/a"
}

func numCPU() int { return runtime.NumCPU() }
