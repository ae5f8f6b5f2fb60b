// Package devmode runs a complete mailgate in one process for trying it
// out: an embedded Redis-compatible store (miniredis), a local SMTP server
// that captures mail into .eml files, a demo app and its token. Nothing
// persists across restarts.
//
// miniredis runs mailgate's Lua scripts but is not Redis; it is used here
// only, never in the tests of the queue.
package devmode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
)

// Options configure the dev install.
type Options struct {
	Listen string // API address
	// SMTPListen is the SMTP door's address ("" for none). Local clients
	// need no AUTH there: the demo app's smtp.networks is the loopback.
	SMTPListen string
	Dir        string    // captured mail goes to Dir/outbox
	Stdout     io.Writer // the banner
	Log        io.Writer // the log
	// Ready, when set, receives the API address and a demo token once
	// everything listens.
	Ready func(addr, token string)
}

// DemoApp is the id of the app dev mode configures.
const DemoApp = "demo"

// Run runs the dev install until ctx ends.
func Run(ctx context.Context, o Options) error {
	log := slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	outbox := filepath.Join(o.Dir, "outbox")
	if err := os.MkdirAll(outbox, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", outbox, err)
	}

	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("start the embedded store: %w", err)
	}
	defer mr.Close()
	// miniredis does not expire keys by itself; advance its clock with ours.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				mr.FastForward(time.Second)
			}
		}
	}()

	smtpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("capture server: %w", err)
	}
	capture := smtp.NewServer(&Capture{dir: outbox, log: log.With("component", "capture"), now: time.Now})
	capture.Domain = "mailgate-dev.localhost"
	capture.AllowInsecureAuth = true
	capture.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	go func() { _ = capture.Serve(smtpLn) }()
	defer capture.Close()

	cfg := devConfig(o.Listen, o.SMTPListen, mr.Addr(), smtpLn.Addr().(*net.TCPAddr))
	if problems := cfg.Validate(); len(problems) > 0 {
		return fmt.Errorf("dev configuration is invalid (a bug): %v", config.Problems(problems))
	}
	apiLn, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (use --listen to pick another address)", o.Listen, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	g, err := gateway.New(gateway.Options{Config: cfg, Log: log, Listener: apiLn, Redis: rdb, NeverEvicts: true})
	if err != nil {
		apiLn.Close()
		return err
	}
	tok, _, err := g.Tokens().Issue(DemoApp, token.ScopeApp, 0)
	if err != nil {
		return err
	}
	addr := apiLn.Addr().String()
	fmt.Fprintf(o.Stdout, banner, addr, tok, addr, tok, addr, tok)
	if a := g.SMTPAddr(); a != "" {
		fmt.Fprintf(o.Stdout, smtpBanner, a)
	}
	fmt.Fprintf(o.Stdout, bannerEnd, outbox)
	if o.Ready != nil {
		o.Ready(addr, tok)
	}
	return g.Run(ctx)
}

const banner = `
mailgate dev — a complete local install (embedded store, capture SMTP server, demo app)
Nothing persists across restarts: the store lives in memory and the token below
works only until you stop this process.

  API:          http://%s
  demo token:   %s

Send a message:

  curl -sS http://%s/v1/messages -H 'Authorization: Bearer %s' \
    -H 'Content-Type: application/json' \
    -d '{"to":"you@example.com","subject":"Hello from mailgate","text":"It works."}'

Then read its status with the id it returns:

  curl -sS http://%s/v1/messages/ID -H 'Authorization: Bearer %s'
`

// smtpBanner shows the SMTP door, which a device or a local MTA would use.
const smtpBanner = `
Or over SMTP, as a device or a relay would (no AUTH needed from this host):

  printf 'Subject: Hello over SMTP\r\n\r\nIt works.\r\n' | curl -sS smtp://%s \
    --mail-from demo@example.com --mail-rcpt you@example.com -T -
`

const bannerEnd = `
Captured mail is written to %s as .eml files.
Press Ctrl-C to stop.

`

func devConfig(listen, smtpListen, redisAddr string, smtpAddr *net.TCPAddr) *config.Config {
	cfg := &config.Config{
		Listen: listen,
		Redis:  config.Redis{URL: "redis://" + redisAddr + "/0"},
		Auth:   config.Auth{SigningKey: randomKey(), Issuer: "mailgate-dev"},
		Delivery: config.Delivery{
			BackoffInitial: time.Second, BackoffMax: 10 * time.Second,
			PollInterval: 100 * time.Millisecond, HelloName: "mailgate-dev.localhost",
		},
		Routes: []config.Route{{
			Name: "dev-capture", Type: config.RouteSMTP,
			Host: smtpAddr.IP.String(), Port: smtpAddr.Port,
			TLS:    config.RouteTLS{Mode: config.TLSNone},
			Limits: config.Limits{MaxConnections: 2},
		}},
		Apps: []config.App{{
			ID: DemoApp, Route: "dev-capture",
			From: config.AppFrom{Default: "mailgate demo <demo@example.com>", Allowed: []string{"*@example.com"}},
			SMTP: config.AppSMTP{Networks: []string{"127.0.0.1/32", "::1/128"}},
		}},
	}
	cfg.SMTP.Listen = smtpListen
	cfg.SMTP.Hostname = "mailgate-dev.localhost"
	cfg.WithDefaults()
	return cfg
}

func randomKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}
