// Command mailgate is an HTTP-to-SMTP submission gateway for Microsoft 365.
// This file only parses the command line and wires packages together; the
// work lives under internal/ and api/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/devmode"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/routecheck"
	"github.com/mailgate/mailgate/internal/token"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `mailgate — an HTTP-to-SMTP submission gateway for Microsoft 365

Usage:
  mailgate serve --config FILE [--role all|api|worker]
  mailgate dev [--listen ADDR] [--dir DIR]
  mailgate token issue --config FILE --app ID [--ttl 8760h] (0: never expires)
  mailgate token issue --config FILE --admin NAME [--ttl 8760h]
  mailgate token revoke --config FILE TOKEN_OR_ID
  mailgate smtp-password issue --config FILE --app ID
  mailgate smtp-password revoke --config FILE PASSWORD_OR_ID
  mailgate config check --config FILE [--mx DOMAIN]
  mailgate check --config FILE --route NAME [--send-test TO]
  mailgate queue failed|requeue|delete --config FILE --route NAME [ID | --all] [--json]
  mailgate sendmail [sendmail options] [recipients] < message   (also as /usr/sbin/sendmail)
  mailgate sendmail --flush [--config FILE]
  mailgate healthcheck [--url http://127.0.0.1:8080/readyz]
  mailgate version

MAILGATE_CONFIG may stand in for --config.
`

func main() {
	if mode, ok := sendmailName(os.Args[0]); ok {
		os.Exit(cmdSendmail(append(mode, os.Args[1:]...), os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run executes one command and returns the exit code.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(rest, stderr, getenv)
	case "dev":
		err = cmdDev(rest, stdout, stderr)
	case "token":
		err = cmdToken(rest, stdout, stderr, getenv)
	case "queue":
		err = cmdQueue(rest, stdout, stderr, getenv)
	case "smtp-password":
		err = cmdSMTPPassword(rest, stdout, stderr, getenv)
	case "config":
		if len(rest) == 0 || rest[0] != "check" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return cmdConfigCheck(rest[1:], stdout, stderr, getenv)
	case "check":
		return cmdCheck(rest, stdout, stderr, getenv)
	case "sendmail":
		return cmdSendmail(rest, os.Stdin, stdout, stderr, getenv)
	case "healthcheck":
		err = cmdHealthcheck(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mailgate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var usageErr usageError
		if errors.As(err, &usageErr) {
			fmt.Fprintf(stderr, "mailgate: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "mailgate: %v\n", err)
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mailgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configPath is --config, or MAILGATE_CONFIG.
func configPath(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := getenv("MAILGATE_CONFIG"); p != "" {
		return p, nil
	}
	return "", usageError{"--config FILE (or MAILGATE_CONFIG) is required"}
}

func loadConfig(flagValue string, getenv func(string) string) (*config.Config, error) {
	path, err := configPath(flagValue, getenv)
	if err != nil {
		return nil, err
	}
	return config.Load(path, getenv)
}

func newLogger(w io.Writer, l config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// redisLog sends go-redis's own messages (every failed dial during an
// outage) to the debug log; the workers and the API report outages once.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Debug(fmt.Sprintf(format, v...), "component", "go-redis")
}

// quietRedis installs redisLog. go-redis keeps its logger in a package
// variable; main is the one place that may set it.
func quietRedis(log *slog.Logger) { redis.SetLogger(redisLog{log}) }

func cmdServe(args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("serve", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	role := fs.String("role", gateway.RoleAll, "what to run: all, api or worker")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgFlag, getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger(stderr, cfg.Log)
	quietRedis(log)
	g, err := gateway.New(gateway.Options{Config: cfg, Role: *role, Log: log,
		DrainDelay: cfg.Shutdown.DrainDelay, ShutdownTimeout: cfg.Shutdown.Timeout})
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

func cmdDev(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "API address")
	smtpListen := fs.String("smtp-listen", "127.0.0.1:2525", "the SMTP door's address (\"\" for none)")
	dir := fs.String("dir", "mailgate-dev", "where captured mail is written (DIR/outbox)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return devmode.Run(ctx, devmode.Options{Listen: *listen, SMTPListen: *smtpListen, Dir: *dir, Stdout: stdout, Log: stderr})
}

func cmdToken(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "issue" && args[0] != "revoke") {
		return usageError{"token takes issue or revoke"}
	}
	fs := newFlags("token "+args[0], stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	app := fs.String("app", "", "the app the token is for")
	admin := fs.String("admin", "", "issue an operator token with this name instead of an app token")
	ttl := fs.Duration("ttl", defaultTokenTTL, "lifetime, e.g. 720h; 0 means no expiry")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgFlag, getenv)
	if err != nil {
		return err
	}
	if args[0] == "issue" {
		return tokenIssue(cfg, *app, *admin, *ttl, stdout, stderr)
	}
	if fs.NArg() != 1 {
		return usageError{"token revoke takes one TOKEN_OR_ID"}
	}
	return tokenRevoke(cfg, fs.Arg(0), stdout, stderr)
}

// defaultTokenTTL is a year: a token that leaks from an app's
// configuration stops working on its own some day, yet apps need a new one
// rarely enough that nobody is tempted to ask for tokens that never expire.
const defaultTokenTTL = 8760 * time.Hour

// tokenIssue prints the token alone on stdout, so that
// `TOKEN=$(mailgate token issue …)` works; what it is worth goes to stderr.
func tokenIssue(cfg *config.Config, app, admin string, ttl time.Duration, stdout, stderr io.Writer) error {
	subject, scope := app, token.ScopeApp
	switch {
	case app != "" && admin != "":
		return usageError{"give --app or --admin, not both"}
	case admin != "":
		subject, scope = admin, token.ScopeAdmin
	case app == "":
		return usageError{"--app ID is required"}
	case cfg.App(app) == nil:
		return fmt.Errorf("no app %q in the configuration", app)
	}
	if ttl < 0 {
		return usageError{"--ttl must not be negative (0 means no expiry)"}
	}
	m, err := gateway.Tokens(cfg, nil, nil)
	if err != nil {
		return err
	}
	raw, c, err := m.Issue(subject, scope, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, raw)
	if c.ExpiresAt == nil {
		fmt.Fprintf(stderr, "issued %s token %s for %s, audience %q; it does NOT expire (--ttl 0): revoke it when it is no longer needed\n", scope, c.ID, subject, m.Audience())
	} else {
		fmt.Fprintf(stderr, "issued %s token %s for %s, audience %q; it expires %s\n", scope, c.ID, subject, m.Audience(), c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// tokenRevoke returns once every running instance refuses the token: it
// confirmed having it in memory, or it asks Redis (package token,
// Revocations); stderr says which.
func tokenRevoke(cfg *config.Config, tokenOrID string, stdout, stderr io.Writer) error {
	// Revoking is always safe, so a token issued before audiences existed
	// can be revoked whatever auth.accept_tokens_without_audience says.
	revokeCfg := *cfg
	revokeCfg.Auth.AcceptTokensWithoutAudience = true
	m, err := gateway.Tokens(&revokeCfg, nil, nil)
	if err != nil {
		return err
	}
	jti, expires := tokenOrID, time.Time{}
	if strings.Count(tokenOrID, ".") == 2 {
		c, err := m.Parse(tokenOrID)
		switch {
		case errors.Is(err, token.ErrExpired):
			fmt.Fprintln(stdout, "the token has already expired; nothing to revoke")
			return nil
		case err != nil:
			return fmt.Errorf("not a token of this mailgate: %w", err)
		}
		jti = c.ID
		if c.ExpiresAt != nil {
			expires = c.ExpiresAt.Time
		}
	} else if len(jti) != 32 || strings.Trim(jti, "0123456789abcdef") != "" {
		return usageError{"give a token, or a token id (the jti: 32 hex characters)"}
	}
	rdb, err := gateway.NewRedisClient(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := token.NewRevocations(rdb, cfg.Redis.KeyPrefix, nil).Revoke(ctx, jti, expires)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s\n", jti)
	switch {
	case rc.Listening == 0:
		fmt.Fprintln(stderr, "no running instance holds the list in memory; an instance that does not asks Redis on each request")
	case rc.AckErr != nil:
		fmt.Fprintf(stderr, "the running instances' confirmations could not be collected (%v); it waited until any "+
			"instance that missed the revocation has stopped trusting its copy of the list and asks Redis on each request\n", rc.AckErr)
	case rc.Confirmed < rc.Listening:
		fmt.Fprintf(stderr, "%d of %d running instances confirmed; one that did not has lost its subscription "+
			"and asks Redis on each request\n", rc.Confirmed, rc.Listening)
	default:
		fmt.Fprintf(stderr, "%d running instance(s) confirmed\n", rc.Confirmed)
	}
	return nil
}

func cmdConfigCheck(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("config check", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	mx := fs.String("mx", "", "also print the Exchange Online MX host (connector host) of this domain")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *mx != "" {
		fmt.Fprintf(stdout, "%s: connector host %s\n", *mx, config.MXHost(*mx))
	}
	path, err := configPath(*cfgFlag, getenv)
	if err != nil {
		if *mx != "" {
			return 0
		}
		fmt.Fprintf(stderr, "mailgate: %v\n", err)
		return 2
	}
	problems, warnings := config.CheckWarnings(path, getenv)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, p.String())
		}
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning: "+w.String())
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

func cmdCheck(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("check", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	route := fs.String("route", "", "the route to check")
	sendTo := fs.String("send-test", "", "also send one test message to this address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgFlag, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "mailgate: %v\n", err)
		return 1
	}
	r := cfg.Route(*route)
	if r == nil {
		names := make([]string, len(cfg.Routes))
		for i, rr := range cfg.Routes {
			names[i] = rr.Name
		}
		fmt.Fprintf(stderr, "mailgate: no route %q; routes are: %s\n", *route, strings.Join(names, ", "))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	redisOK := checkRedisEviction(ctx, cfg, stdout)
	// The check's connection takes a slot from the limiter the workers
	// share, so it waits for a worker rather than being refused 432 4.3.2.
	var opts routecheck.Options
	rdb, err := gateway.NewRedisClient(cfg.Redis)
	if err == nil {
		defer rdb.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rdb.Ping(pctx).Err()
		cancel()
	}
	if err != nil {
		fmt.Fprintf(stdout, "  ! Redis unreachable (%v): the check's connection is not counted against the mailbox's "+
			"connection limit; with mailgate delivering on this route, Exchange may refuse it with 432 4.3.2\n", err)
	} else {
		opts.Limiter = limits.New(rdb, cfg.Redis.KeyPrefix, nil)
	}
	if ok := routecheck.Run(ctx, cfg, r, *sendTo, stdout, opts); !ok || !redisOK {
		return 1
	}
	return 0
}

// checkRedisEviction reports Redis's maxmemory-policy as `serve` judges it
// at startup; false means serve would refuse to start.
func checkRedisEviction(ctx context.Context, cfg *config.Config, out io.Writer) bool {
	rdb, err := gateway.NewRedisClient(cfg.Redis)
	if err != nil {
		fmt.Fprintf(out, "  ✗ redis    %v\n", err)
		return false
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res := gateway.ReadEviction(ctx, rdb)
	switch {
	case res.Safe():
		fmt.Fprintf(out, "  ✓ redis    maxmemory-policy noeviction (%s)\n", res.Source)
	case !res.Known():
		fmt.Fprintf(out, "  ! redis    WARNING: %v; make sure maxmemory-policy is noeviction\n", res.Err)
	case cfg.Redis.AllowEviction:
		fmt.Fprintf(out, "  ! redis    WARNING (risk accepted by redis.allow_eviction): %s\n", res.Problem())
	default:
		fmt.Fprintf(out, "  ✗ redis    %s\n", res.Problem())
		return false
	}
	return true
}

func versionString() string {
	s := "mailgate " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " (" + bi.GoVersion
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" && len(kv.Value) >= 12 {
				s += ", " + kv.Value[:12]
			}
		}
		s += ")"
	}
	return s
}
