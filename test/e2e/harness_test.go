// Package e2e tests mailgate end to end: a real redis-server, the Exchange
// Online simulator over real SMTP with STARTTLS and AUTH, and mailgate's own
// gateway serving HTTP on a loopback port. Every HTTP response is checked
// against openapi/openapi.yaml.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/delivery"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/openapi/contract"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

const (
	signingKey = "e2e-signing-key-0123456789abcdef0123456789"
	relay      = "relay@contoso.com"
	relayPass  = "relay-password"
)

// env is one test's mailgate with its Redis and its Exchange simulator.
type env struct {
	t        *testing.T
	redis    *redistest.Server
	sim      *exosim.Sim
	cfg      *config.Config
	tokens   *token.Manager
	contract *contract.Validator
	base     string // the API's base URL, when the API runs
	// workerBase is the last worker-role gateway's health/metrics address.
	workerBase string
	// smtpAddr and smtpsAddr are the SMTP door's listeners, when configured.
	smtpAddr, smtpsAddr string

	mu       sync.Mutex
	outcomes []outcome
}

type outcome struct {
	id     string
	status string
}

// baseConfig is a valid configuration pointing at sim and srv, with quick
// retries so tests need no long waits.
func baseConfig(sim *exosim.Sim, srv *redistest.Server) *config.Config {
	cfg := &config.Config{
		Listen: "127.0.0.1:0",
		Auth:   config.Auth{SigningKey: signingKey, Issuer: "mailgate"},
		Delivery: config.Delivery{
			MaxAge: time.Minute, BackoffInitial: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
			VisibilityTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second, PollInterval: 20 * time.Millisecond,
			ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, HelloName: "mailgate.test",
		},
		Routes: []config.Route{{
			Name: "m365", Type: config.RouteSMTPAuth, Host: sim.Host(), Port: sim.Port(),
			TLS:    config.RouteTLS{Mode: config.TLSStartTLS, CAFile: sim.CAFile()},
			Auth:   config.RouteAuth{Mechanism: config.MechLogin, Username: relay, Password: relayPass},
			SendAs: []string{"helpdesk@contoso.com", "*@alerts.contoso.com"},
		}},
		Apps: []config.App{
			{ID: "monitoring", Route: "m365",
				From:            config.AppFrom{Default: "Alerts <alerts@alerts.contoso.com>", Allowed: []string{"*@alerts.contoso.com"}},
				Recipients:      config.AppRecipients{Allowed: []string{"*@contoso.com", "*@example.com"}, MaxPerMessage: 50},
				MaxMessageBytes: 256 << 10},
			{ID: "billing", Route: "m365", From: config.AppFrom{Default: "helpdesk@contoso.com"}},
			{ID: "retired", Route: "m365", From: config.AppFrom{Default: relay}, Disabled: true},
		},
	}
	if srv != nil {
		cfg.Redis.URL = srv.URL()
	}
	return cfg
}

// simOptions is the tenant the tests deliver to: relay@contoso.com with
// Send As on what the configuration's send_as says.
func simOptions() exosim.Options {
	return exosim.Options{
		Mailboxes: map[string]string{relay: relayPass},
		SendAs:    map[string][]string{relay: {"helpdesk@contoso.com", "*@alerts.contoso.com"}},
	}
}

// newEnv starts Redis and the simulator and prepares a configuration;
// mutate may change it before it is validated.
func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	return newEnvSim(t, simOptions(), mutate)
}

// newEnvSim is newEnv with a tenant of the test's own.
func newEnvSim(t *testing.T, simOpts exosim.Options, mutate func(*config.Config)) *env {
	t.Helper()
	return newEnvSimHook(t, simOpts, nil, mutate)
}

// newEnvSimHook is newEnvSim with a look at the started simulator before
// the configuration is mutated (for files the simulator makes).
func newEnvSimHook(t *testing.T, simOpts exosim.Options, started func(*exosim.Sim), mutate func(*config.Config)) *env {
	t.Helper()
	// On a Redis Cluster (TestCoreOnRedisCluster), the test shares it under
	// a key prefix of its own, and a 202 waits for a replica.
	seeds := os.Getenv(clusterEnv)
	var srv *redistest.Server
	if seeds == "" {
		srv = redistest.Start(t)
	}
	sim := exosim.Start(t, simOpts)
	if started != nil {
		started(sim)
	}
	cfg := baseConfig(sim, srv)
	if seeds != "" {
		cfg.Redis = config.Redis{Cluster: config.RedisCluster{Addrs: strings.Split(seeds, ",")},
			KeyPrefix: "e2e-" + queue.NewID(time.Now()), MinReplicasAcked: 1}
	}
	if mutate != nil {
		mutate(cfg)
	}
	cfg.WithDefaults()
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("test configuration is invalid:\n%v", config.Problems(problems))
	}
	tm, err := gateway.Tokens(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, redis: srv, sim: sim, cfg: cfg, tokens: tm, contract: contract.New(t)}
}

// start runs a gateway in role until the test ends, and returns a function
// that stops it and waits.
func (e *env) start(role string) (stop func()) {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: e.cfg, Role: role, Listener: ln,
		ShutdownTimeout: 20 * time.Second,
		WorkerHooks: &delivery.Hooks{Done: func(j *queue.Job, o queue.Outcome) {
			e.mu.Lock()
			e.outcomes = append(e.outcomes, outcome{j.ID, o.Status})
			e.mu.Unlock()
		}}})
	if err != nil {
		e.t.Fatal(err)
	}
	if role != gateway.RoleWorker {
		e.base = "http://" + g.Addr()
		e.smtpAddr, e.smtpsAddr = g.SMTPAddr(), g.SMTPTLSAddr()
	} else {
		e.workerBase = "http://" + g.Addr() // health and metrics only
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Run(ctx); err != nil {
			e.t.Errorf("gateway: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// token issues a token for app.
func (e *env) token(app string) string {
	raw, _, err := e.tokens.Issue(app, token.ScopeApp, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// response is an HTTP answer with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request and checks the answer against the OpenAPI spec.
func (e *env) do(method, path, contentType, auth string, body []byte, header map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		if strings.HasPrefix(auth, "Basic ") || strings.HasPrefix(auth, "Bearer ") || auth == "-" {
			if auth != "-" {
				req.Header.Set("Authorization", auth)
			}
		} else {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	e.contract.Check(e.t, req, body, resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// submitJSON posts v as JSON and expects 202, returning the id.
func (e *env) submitJSON(tok string, v any, header map[string]string) string {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	r := e.do("POST", "/v1/messages", "application/json", tok, b, header)
	if r.status != http.StatusAccepted {
		e.t.Fatalf("submit: %d %s", r.status, r.body)
	}
	m := r.json(e.t)
	id, _ := m["id"].(string)
	if m["status"] != "queued" || r.header.Get("Location") != "/v1/messages/"+id {
		e.t.Fatalf("submit answer: %s, Location %q", r.body, r.header.Get("Location"))
	}
	return id
}

// status reads a message's status.
func (e *env) status(tok, id string) map[string]any {
	e.t.Helper()
	r := e.do("GET", "/v1/messages/"+id, "", tok, nil, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("status of %s: %d %s", id, r.status, r.body)
	}
	return r.json(e.t)
}

// waitStatus polls the status API until the message reaches want, and
// fails on a final status that is not want.
func (e *env) waitStatus(tok, id, want string, timeout time.Duration) map[string]any {
	e.t.Helper()
	var st map[string]any
	testwait.UntilNil(e.t, timeout, func() error {
		st = e.status(tok, id)
		got, _ := st["status"].(string)
		if got == want {
			return nil
		}
		if got == "sent" || got == "failed" {
			e.t.Fatalf("message %s ended %s, want %s: %v", id, got, want, st)
		}
		return fmt.Errorf("message %s is %s, want %s: %v", id, got, want, st)
	})
	return st
}

// waitEvent polls a message's status until one of its events' details
// contains want.
func (e *env) waitEvent(tok, id, want string, timeout time.Duration) map[string]any {
	e.t.Helper()
	var st map[string]any
	testwait.UntilNil(e.t, timeout, func() error {
		st = e.status(tok, id)
		for _, ev := range st["events"].([]any) {
			if d, _ := ev.(map[string]any)["detail"].(string); strings.Contains(d, want) {
				return nil
			}
		}
		return fmt.Errorf("no event of message %s mentions %q: %v", id, want, st["events"])
	})
	return st
}

// waitRouteHeld polls GET /v1/routes until the caller's route is held, and
// returns that answer.
func (e *env) waitRouteHeld(tok string, timeout time.Duration) string {
	e.t.Helper()
	var body string
	testwait.UntilNil(e.t, timeout, func() error {
		r := e.do("GET", "/v1/routes", "", tok, nil, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("routes: %d %s", r.status, r.body)
		}
		body = string(r.body)
		if !strings.Contains(body, `"state":"held"`) {
			return fmt.Errorf("route not held: %s", body)
		}
		return nil
	})
	return body
}

// assertNothingQueued checks that Redis holds no message at all.
func (e *env) assertNothingQueued() {
	e.t.Helper()
	ctx := context.Background()
	keys, err := e.redis.Client().Keys(ctx, "mailgate:*msg:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	ready := e.redis.Client().ZCard(ctx, "mailgate:{m365}:ready").Val()
	if len(keys) != 0 || ready != 0 {
		e.t.Fatalf("something was queued: %d message keys, %d ready", len(keys), ready)
	}
}

// events returns the statuses of a status document's events, in order.
func events(st map[string]any) []string {
	var out []string
	evs, _ := st["events"].([]any)
	for _, ev := range evs {
		m, _ := ev.(map[string]any)
		s, _ := m["status"].(string)
		out = append(out, s)
	}
	return out
}
