package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

const (
	signingKey = "fault-signing-key-0123456789abcdef0123456789"
	relay      = "relay@contoso.com"
	relayPass  = "relay-password"
	fromDomain = "alerts.contoso.com"
	route      = "m365"
)

// settings are the knobs of one test's mailgate configuration.
type settings struct {
	MaxAge          time.Duration
	BackoffInitial  time.Duration
	BackoffMax      time.Duration
	Visibility      time.Duration
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	Workers         int // the route's max_connections: one worker each
}

func (s settings) withDefaults() settings {
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&s.MaxAge, time.Minute)
	def(&s.BackoffInitial, 200*time.Millisecond)
	def(&s.BackoffMax, 2*time.Second)
	def(&s.Visibility, 2*time.Second)
	def(&s.DrainDelay, time.Second)
	def(&s.ShutdownTimeout, 10*time.Second)
	if s.Workers == 0 {
		s.Workers = 3
	}
	return s
}

// env is one test's world: Redis with AOF fsync always, the simulator
// behind a forwarder, a configuration file and an app token.
type env struct {
	t       *testing.T
	set     settings
	redis   *redistest.Server
	rdb     *redis.Client // a client of the test's own, for looking into the queue
	sim     *exosim.Sim
	fwd     *forwarder
	cfgPath string
	token   string
	http    *http.Client
	procs   int
}

func newEnv(t *testing.T, set settings) *env {
	t.Helper()
	set = set.withDefaults()
	e := &env{t: t, set: set}
	e.redis = redistest.StartWith(t, redistest.Options{AppendFsyncAlways: true})
	e.rdb = e.redis.Client()
	e.sim = exosim.Start(t, exosim.Options{
		Mailboxes: map[string]string{relay: relayPass},
		SendAs:    map[string][]string{relay: {"*@" + fromDomain}},
		// Only this test's mailgate sends; Exchange's per-minute limit is
		// not what is under test (the simulator only records the excess).
		MessagesPerMinute: 100000,
	})
	e.fwd = startForwarder(t, e.sim.Addr())
	e.cfgPath = filepath.Join(t.TempDir(), "mailgate.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(e.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	tm, err := token.New(token.Options{Key: []byte(signingKey), Issuer: "mailgate", Audience: config.DefaultAudience("mailgate", "mailgate")})
	if err != nil {
		t.Fatal(err)
	}
	if e.token, _, err = tm.Issue("monitoring", token.ScopeApp, time.Hour); err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	e.http = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return e
}

// config is the YAML file mailgate runs with: every timing short, the
// route pointed at the forwarder, the simulator's CA trusted.
//
// The route is of type smtp, not smtp-auth: an smtp-auth route keeps
// Exchange Online's 30 messages a minute per mailbox (and refuses a
// higher limit), which would stretch a run of hundreds of messages over
// many minutes. A plain smtp route speaks the same conversation to the
// simulator — STARTTLS with the CA verified, AUTH LOGIN, the same workers,
// queue and connection slots (max_connections) — without a rate limit.
func (e *env) config() string {
	s := e.set
	return fmt.Sprintf(`listen: "127.0.0.1:0"
redis:
  url: %q
auth:
  signing_key: %q
delivery:
  max_age: %s
  backoff_initial: %s
  backoff_max: %s
  visibility_timeout: %s
  connect_timeout: 2s
  command_timeout: 5s
  idle_timeout: 5s
  poll_interval: 20ms
  probe_interval: 1s
  hello_name: mailgate.test
log:
  level: info
  format: json
shutdown:
  drain_delay: %s
  timeout: %s
routes:
  - name: %s
    type: smtp
    host: 127.0.0.1
    port: %d
    tls:
      mode: starttls
      ca_file: %q
    auth:
      mechanism: login
      username: %s
      password: %s
    send_as: ["*@%s"]
    limits:
      max_connections: %d
apps:
  - id: monitoring
    route: %s
    from:
      default: "Alerts <alerts@%s>"
      allowed: ["*@%s"]
    recipients:
      allowed: ["*@contoso.com"]
`, e.redis.URL(), signingKey, s.MaxAge, s.BackoffInitial, s.BackoffMax, s.Visibility,
		s.DrainDelay, s.ShutdownTimeout, route, e.fwd.Port(), e.sim.CAFile(), relay, relayPass,
		fromDomain, s.Workers, route, fromDomain, fromDomain)
}

// proc is one mailgate child process.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	log    *logBuf
	base   string // http://127.0.0.1:port
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

// start runs `mailgate serve` in the role all and returns once its API
// listens.
func (e *env) start() *proc {
	e.t.Helper()
	return e.startRole("all", e.cfgPath)
}

// startRole runs `mailgate serve --role role --config cfgPath` and returns
// once it runs (and, unless it is a worker, its API listens).
func (e *env) startRole(role, cfgPath string) *proc {
	e.t.Helper()
	e.procs++
	p := &proc{t: e.t, name: fmt.Sprintf("mailgate#%d (%s)", e.procs, role), log: newLogBuf(), exited: make(chan struct{})}
	p.cmd = exec.Command(mailgateBin, "serve", "--config", cfgPath, "--role", role)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start mailgate: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	e.t.Cleanup(p.cleanup)
	if role != "worker" {
		line, ok := p.log.waitFor(10*time.Second, p.exited, func(l logLine) bool { return l.Msg == "API listening" })
		if !ok {
			e.t.Fatalf("%s did not start listening", p.name)
		}
		p.base = "http://" + line.str("addr")
	}
	if _, ok := p.log.waitFor(10*time.Second, p.exited, func(l logLine) bool { return l.Msg == "mailgate running" }); !ok {
		e.t.Fatalf("%s did not report running", p.name)
	}
	return p
}

// writeConfig writes a configuration like the env's own but with another
// Redis URL, and returns its path.
func (e *env) writeConfig(name, redisURL string) string {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), name)
	cfg := strings.Replace(e.config(), fmt.Sprintf("url: %q", e.redis.URL()), fmt.Sprintf("url: %q", redisURL), 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// cleanup kills the process if it still runs, fails on a data race it
// reported, and shows its log when the test failed.
func (p *proc) cleanup() {
	select {
	case <-p.exited:
	default:
		if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			p.t.Errorf("kill %s: %v", p.name, err)
		}
		<-p.exited
	}
	if p.log.contains("WARNING: DATA RACE") {
		p.t.Errorf("%s reported a data race", p.name)
	}
	if p.t.Failed() {
		p.t.Logf("---- %s stderr: warnings and errors, by message ----\n%s", p.name, p.log.problems())
		p.t.Logf("---- %s stderr: last 30 lines ----\n%s", p.name, p.log.tail(30))
	}
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill ends the process with SIGKILL, as a crash or an OOM kill would, and
// waits for it.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// wait waits up to timeout for the process to exit and returns its exit
// code; ok is false when it still runs.
func (p *proc) wait(timeout time.Duration) (code int, ok bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		return 0, false
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), true
	}
	if p.err != nil {
		return -1, true
	}
	return 0, true
}

// logLine is one JSON line of mailgate's log; other lines (a race report)
// have only Raw.
type logLine struct {
	Raw    string
	Msg    string
	Level  string
	Fields map[string]any
}

func (l logLine) str(k string) string { s, _ := l.Fields[k].(string); return s }

// logBuf collects a process's stderr and wakes whoever waits for a line.
type logBuf struct {
	mu      sync.Mutex
	partial []byte
	lines   []logLine
	changed chan struct{}
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		raw := string(b.partial[:i])
		b.partial = b.partial[i+1:]
		l := logLine{Raw: raw}
		if json.Unmarshal([]byte(raw), &l.Fields) == nil {
			l.Msg, _ = l.Fields["msg"].(string)
			l.Level, _ = l.Fields["level"].(string)
		}
		b.lines = append(b.lines, l)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// waitFor returns the first line matching match, waiting up to timeout for
// it; it gives up early when stop is closed (the process exited).
func (b *logBuf) waitFor(timeout time.Duration, stop <-chan struct{}, match func(logLine) bool) (logLine, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		changed := b.changed
		for _, l := range b.lines {
			if match(l) {
				b.mu.Unlock()
				return l, true
			}
		}
		b.mu.Unlock()
		select {
		case <-changed:
		case <-stop:
			stop = nil // look once more at what it wrote before exiting
			select {
			case <-changed:
			default:
				b.mu.Lock()
				for _, l := range b.lines {
					if match(l) {
						b.mu.Unlock()
						return l, true
					}
				}
				b.mu.Unlock()
				return logLine{}, false
			}
		case <-deadline.C:
			return logLine{}, false
		}
	}
}

// count is how many lines match.
func (b *logBuf) count(match func(logLine) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if match(l) {
			n++
		}
	}
	return n
}

// matching returns the lines that match.
func (b *logBuf) matching(match func(logLine) bool) []logLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logLine
	for _, l := range b.lines {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

func (b *logBuf) contains(s string) bool {
	return b.count(func(l logLine) bool { return strings.Contains(l.Raw, s) }) > 0
}

// problems summarises every line that is not INFO or DEBUG (including
// lines that are not JSON, such as a race report): each distinct message
// once, with how often it came and its first occurrence.
func (b *logBuf) problems() string {
	ls := b.matching(func(l logLine) bool { return l.Level != "INFO" && l.Level != "DEBUG" })
	var order []string
	first := map[string]string{}
	n := map[string]int{}
	for _, l := range ls {
		k := l.Msg
		if k == "" {
			k = l.Raw
		}
		if n[k] == 0 {
			order = append(order, k)
			first[k] = l.Raw
		}
		n[k]++
	}
	var sb strings.Builder
	for _, k := range order {
		fmt.Fprintf(&sb, "%d× %s\n", n[k], first[k])
	}
	return sb.String()
}

// unrecorded is the set of message ids whose outcome a worker could not
// record: the only messages a live worker may deliver twice.
func (b *logBuf) unrecorded() map[string]bool {
	out := map[string]bool{}
	for _, l := range b.matching(func(l logLine) bool { return strings.HasPrefix(l.Msg, "could not record the outcome") }) {
		out[l.str("id")] = true
	}
	return out
}

func (b *logBuf) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	start := max(0, len(b.lines)-n)
	var sb strings.Builder
	for _, l := range b.lines[start:] {
		sb.WriteString(l.Raw)
		sb.WriteByte('\n')
	}
	sb.Write(b.partial)
	return sb.String()
}

// answer is what the API said to one request.
type answer struct {
	status int
	id     string // for a 202
	code   string // the problem's code, for an error
	body   string
	err    error // the request got no HTTP answer at all
}

// submit posts one JSON message.
func (e *env) submit(p *proc, n int) answer { return e.submitWith(p, n, nil) }

// submitWith posts one JSON message with extra request headers.
func (e *env) submitWith(p *proc, n int, header map[string]string) answer {
	body, err := json.Marshal(map[string]any{
		"to":      "ops@contoso.com",
		"subject": fmt.Sprintf("fault %d", n),
		"text":    fmt.Sprintf("message %d of a fault test", n),
	})
	if err != nil {
		return answer{err: err}
	}
	req, err := http.NewRequest(http.MethodPost, p.base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) answer {
	resp, err := e.http.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{status: resp.StatusCode, err: err}
	}
	a := answer{status: resp.StatusCode, body: string(b)}
	var doc struct {
		ID   string `json:"id"`
		Code string `json:"code"`
	}
	// Only JSON answers (messages, problems) carry an id or a code; one
	// that says it is JSON and is not is an error of its own.
	if len(b) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(b, &doc); err != nil {
			a.err = fmt.Errorf("%s answer is not JSON: %w", resp.Header.Get("Content-Type"), err)
		}
	}
	a.id, a.code = doc.ID, doc.Code
	return a
}

// mustSubmit submits n messages one after the other and returns their ids.
func (e *env) mustSubmit(p *proc, n int) []string {
	e.t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		a := e.submit(p, i)
		if a.err != nil || a.status != http.StatusAccepted || a.id == "" {
			e.t.Fatalf("submit %d: %d %s %v", i, a.status, a.body, a.err)
		}
		ids = append(ids, a.id)
	}
	return ids
}

// msgStatus is the part of GET /v1/messages/{id} the tests read.
type msgStatus struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Events   []struct {
		At     time.Time `json:"at"`
		Status string    `json:"status"`
		Detail string    `json:"detail"`
	} `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// status reads a message's status through the API.
func (e *env) status(p *proc, id string) (msgStatus, error) {
	req, err := http.NewRequest(http.MethodGet, p.base+"/v1/messages/"+id, nil)
	if err != nil {
		return msgStatus{}, err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	a := e.do(req)
	if a.err != nil {
		return msgStatus{}, a.err
	}
	if a.status != http.StatusOK {
		return msgStatus{}, fmt.Errorf("GET /v1/messages/%s: %d %s", id, a.status, a.body)
	}
	var st msgStatus
	if err := json.Unmarshal([]byte(a.body), &st); err != nil {
		return msgStatus{}, fmt.Errorf("status of %s: %w", id, err)
	}
	return st, nil
}

// waitStatuses polls the status API until every id has a final status and
// returns them; it fails the test after timeout, naming what is left.
func (e *env) waitStatuses(p *proc, ids []string, timeout time.Duration) map[string]msgStatus {
	e.t.Helper()
	out := make(map[string]msgStatus, len(ids))
	// Every round asks for each unfinished message: poll at a calmer rhythm
	// than testwait's default so that thousands of ids do not flood the
	// process under test.
	testwait.UntilNilEvery(e.t, timeout, 50*time.Millisecond, func() error {
		var pending []string
		for _, id := range ids {
			if st, ok := out[id]; ok && (st.Status == "sent" || st.Status == "failed") {
				continue
			}
			st, err := e.status(p, id)
			if err != nil {
				e.t.Fatalf("status: %v", err)
			}
			out[id] = st
			if st.Status != "sent" && st.Status != "failed" {
				pending = append(pending, id+"="+st.Status)
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d of %d messages not finished: %v", len(pending), len(ids), head(pending, 10))
		}
		return nil
	})
	return out
}

// deliveries counts what the simulator accepted, per mailgate id (the
// local part of Message-ID <id@alerts.contoso.com>). It fails the test if
// two copies of one message differ in a single byte: a redelivery must send
// the stored bytes unchanged.
func (e *env) deliveries() map[string]int {
	e.t.Helper()
	counts := make(map[string]int)
	first := make(map[string][]byte)
	for _, m := range e.sim.Messages() {
		id := messageIDLocal(e.t, m.Data)
		counts[id]++
		if prev, ok := first[id]; ok && !bytes.Equal(prev, m.Data) {
			e.t.Errorf("message %s was delivered twice with different bytes", id)
		}
		first[id] = m.Data
	}
	return counts
}

func messageIDLocal(t *testing.T, data []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("simulator holds a message that does not parse: %v", err)
	}
	mid := strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>")
	local, domain, ok := strings.Cut(mid, "@")
	if !ok || domain != fromDomain || local == "" {
		t.Fatalf("Message-ID %q is not <id@%s>", mid, fromDomain)
	}
	return local
}

// waitDelivered polls the simulator until every id arrived at least once.
func (e *env) waitDelivered(ids []string, timeout time.Duration) map[string]int {
	e.t.Helper()
	var got map[string]int
	var missing []string
	if testwait.PollEvery(timeout, 50*time.Millisecond, func() bool {
		got, missing = e.deliveries(), nil
		for _, id := range ids {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	}) {
		return got
	}
	e.explainStall(missing[0])
	e.t.Fatalf("%d of %d accepted messages never reached the SMTP server within %v (lost?): %v",
		len(missing), len(ids), timeout, head(missing, 10))
	return nil
}

// explainStall logs what Redis holds about a message that does not move and
// about the route's connection slots, for the failure message.
func (e *env) explainStall(id string) {
	ctx := context.Background()
	ready, inflight, failed := e.depth(ctx)
	e.t.Logf("queue: ready=%d inflight=%d failed=%d", ready, inflight, failed)
	e.t.Logf("message %s: %v; events %v", id,
		e.rdb.HMGet(ctx, "mailgate:{"+route+"}:msg:"+id, "status", "attempts", "due_at", "lease").Val(),
		e.rdb.LRange(ctx, "mailgate:{"+route+"}:ev:"+id, 0, -1).Val())
	for _, k := range e.rdb.Keys(ctx, "mailgate:limits:*").Val() {
		if e.rdb.Type(ctx, k).Val() != "zset" {
			continue
		}
		var held []string
		for _, z := range e.rdb.ZRangeWithScores(ctx, k, 0, -1).Val() {
			held = append(held, fmt.Sprintf("%v (expires in %v)", z.Member,
				time.Until(time.UnixMilli(int64(z.Score))).Round(time.Second)))
		}
		e.t.Logf("%s: %d entries %v", k, len(held), head(held, 5))
	}
}

// tally compares deliveries with the accepted ids.
type tally struct {
	delivered  int      // accepted ids that arrived
	lost       int      // accepted ids that never arrived
	duplicates int      // extra copies of accepted ids
	unaccepted int      // arrivals whose id was never answered 202
	duplicated []string // accepted ids that arrived more than once
}

func count(ids []string, got map[string]int) tally {
	var t tally
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
		switch n := got[id]; {
		case n == 0:
			t.lost++
		default:
			t.delivered++
			t.duplicates += n - 1
			if n > 1 {
				t.duplicated = append(t.duplicated, id)
			}
		}
	}
	for id, n := range got {
		if !want[id] {
			t.unaccepted += n
		}
	}
	return t
}

// depth reads the route's queue from Redis directly.
func (e *env) depth(ctx context.Context) (ready, inflight, failed int64) {
	c := e.rdb
	return c.ZCard(ctx, "mailgate:{"+route+"}:ready").Val(),
		c.ZCard(ctx, "mailgate:{"+route+"}:inflight").Val(),
		c.ZCard(ctx, "mailgate:{"+route+"}:failed").Val()
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "…")
	}
	return s
}
