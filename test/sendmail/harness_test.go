package sendmail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

const (
	signingKey = "sendmail-signing-key-0123456789abcdef0123456789"
	relay      = "relay@contoso.com"
	relayPass  = "relay-password"
	// defaultFrom is the cron app's default From, what a host without a
	// mail domain sends as.
	defaultFrom = "cron@alerts.contoso.com"
)

// server is one test's mailgate (role all) with its Redis and its Exchange
// simulator.
type server struct {
	t      *testing.T
	redis  *redistest.Server
	sim    *exosim.Sim
	cfg    *config.Config
	tokens *token.Manager
	base   string
	stop   func()
}

func startServer(t *testing.T) *server {
	t.Helper()
	rs := redistest.Start(t)
	sim := exosim.Start(t, exosim.Options{
		Mailboxes: map[string]string{relay: relayPass},
		SendAs:    map[string][]string{relay: {"*@alerts.contoso.com"}},
	})
	cfg := &config.Config{
		Listen: "127.0.0.1:0",
		Redis:  config.Redis{URL: rs.URL()},
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
			SendAs: []string{"*@alerts.contoso.com"},
		}},
		Apps: []config.App{{ID: "cron", Route: "m365",
			From: config.AppFrom{Default: "Cron <" + defaultFrom + ">", Allowed: []string{"*@alerts.contoso.com"}}}},
	}
	cfg.WithDefaults()
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("test configuration is invalid:\n%v", config.Problems(problems))
	}
	tm, err := gateway.Tokens(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, redis: rs, sim: sim, cfg: cfg, tokens: tm}
	s.up()
	return s
}

// up starts a gateway (again) on a new port.
func (s *server) up() {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{Config: s.cfg, Role: gateway.RoleAll, Listener: ln, ShutdownTimeout: 20 * time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	s.base = "http://" + g.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				s.t.Errorf("Run: %v", err)
			}
		})
	}
	s.t.Cleanup(s.stop)
	testwait.UntilNil(s.t, 10*time.Second, func() error {
		resp, err := http.Get(s.base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func (s *server) token(app string) string {
	s.t.Helper()
	raw, _, err := s.tokens.Issue(app, token.ScopeApp, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return raw
}

// status reads a message's status through the API.
func (s *server) status(tok, id string) (string, error) {
	req, err := http.NewRequest("GET", s.base+"/v1/messages/"+id, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var st struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/messages/%s: %d %v", id, resp.StatusCode, err)
	}
	return st.Status, nil
}

// delivered waits for the one message with subject at the simulator, and
// for its status to read sent.
func (s *server) delivered(tok, subject string) exosim.Message {
	s.t.Helper()
	var found []exosim.Message
	testwait.Until(s.t, 30*time.Second, func() bool {
		found = s.withSubject(subject)
		return len(found) > 0
	}, "a message with Subject %q at the simulator", subject)
	if len(found) != 1 {
		s.t.Fatalf("%d messages with Subject %q were delivered, want 1", len(found), subject)
	}
	m := found[0]
	h, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		s.t.Fatalf("delivered message does not parse: %v\n%s", err, m.Data)
	}
	msgID := strings.Trim(h.Header.Get("Message-Id"), "<>")
	id, _, _ := strings.Cut(msgID, "@")
	testwait.UntilNil(s.t, 30*time.Second, func() error {
		st, err := s.status(tok, id)
		if err == nil && st != "sent" {
			err = fmt.Errorf("message %s is %s, want sent", id, st)
		}
		return err
	})
	return m
}

func (s *server) withSubject(subject string) []exosim.Message {
	var out []exosim.Message
	for _, m := range s.sim.Messages() {
		if bytes.Contains(m.Data, []byte("\r\nSubject: "+subject+"\r\n")) || bytes.HasPrefix(m.Data, []byte("Subject: "+subject+"\r\n")) {
			out = append(out, m)
		}
	}
	return out
}

// queued counts the messages Redis holds.
func (s *server) queued() int {
	s.t.Helper()
	keys, err := s.redis.Client().Keys(context.Background(), "mailgate:*msg:*").Result()
	if err != nil {
		s.t.Fatal(err)
	}
	return len(keys)
}

// result is how one run of the command ended.
type result struct {
	code           int
	stdout, stderr string
}

// invocation is how a program runs sendmail: which file (the binary or
// the sendmail symlink), with what environment.
type invocation struct {
	conf string // MAILGATE_SENDMAIL_CONF
	url  string
	tok  string
}

// env is the environment a caller gives sendmail: little more than cron's.
func (in invocation) env(t *testing.T) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"GORACE=atexit_sleep_ms=0", // a -race binary would add a second to every exit
		"MAILGATE_SENDMAIL_CONF=" + in.conf,
		"MAILGATE_URL=" + in.url,
		"MAILGATE_TOKEN=" + in.tok,
	}
}

func (in invocation) run(t *testing.T, prog string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = in.env(t)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", prog, err)
	}
	return r
}

// sendmail runs the binary as /usr/sbin/sendmail.
func (in invocation) sendmail(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return in.run(t, sendmailLink, stdin, args...)
}

// subcommand runs `mailgate sendmail ...`.
func (in invocation) subcommand(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return in.run(t, mailgateBin, stdin, append([]string{"sendmail"}, args...)...)
}

func writeConf(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sendmail.conf")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
