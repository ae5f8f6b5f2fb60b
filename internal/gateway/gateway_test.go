package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/syncbuf"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/test/redistest"
	"github.com/mailgate/mailgate/test/testwait"
)

const testKey = "gateway-test-signing-key-0123456789abcdef"

// testBundle is one test's Redis and configuration.
type testBundle struct {
	redis *redistest.Server
	cfg   *config.Config
	log   *syncbuf.Buffer
}

// setup starts a redis-server with args and returns a valid configuration
// pointing at it, changed by mutate. The API role needs no SMTP server.
func setup(t *testing.T, args []string, mutate func(*config.Config)) *testBundle {
	t.Helper()
	srv := redistest.StartWith(t, redistest.Options{Args: args})
	cfg := &config.Config{
		Listen: "127.0.0.1:0",
		Redis:  config.Redis{URL: srv.URL()},
		Auth:   config.Auth{SigningKey: testKey},
		Routes: []config.Route{{Name: "local", Type: config.RouteSMTP, Host: "127.0.0.1", Port: 2525,
			TLS: config.RouteTLS{Mode: config.TLSNone}}},
		Apps: []config.App{{ID: "monitoring", Route: "local", From: config.AppFrom{Default: "alerts@contoso.com"}}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	cfg.WithDefaults()
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("test configuration is invalid:\n%v", config.Problems(problems))
	}
	return &testBundle{redis: srv, cfg: cfg, log: &syncbuf.Buffer{}}
}

func (b *testBundle) newGateway(role string) (*Gateway, error) {
	return New(Options{Config: b.cfg, Role: role, Log: slog.New(slog.NewTextHandler(b.log, nil)), ShutdownTimeout: 5 * time.Second})
}

// run starts g until the test ends.
func (b *testBundle) run(t *testing.T, g *Gateway) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	testwait.Until(t, 10*time.Second, func() bool { return strings.Contains(b.log.String(), "mailgate running") }, "the gateway to run")
}

// get fetches url and returns the status and body.
func get(t *testing.T, c *http.Client, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func testLogger(b *testBundle) *slog.Logger { return slog.New(slog.NewTextHandler(b.log, nil)) }
