package sendmail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Usage is the help text of the command.
const Usage = `Usage:
  mailgate sendmail [-t] [-i] [-f sender] [-F name] [--config FILE] [--] [recipient ...] < message
  mailgate sendmail -bs [--config FILE]          (SMTP on stdin and stdout)
  mailgate sendmail --flush [--config FILE]      (also: sendmail -q)

Reads a message on stdin and submits it to a mailgate server
(POST /v1/messages/raw). Works as /usr/sbin/sendmail when linked or copied
under that name. Configuration: /etc/mailgate/sendmail.conf (url, token or
token_file, spool_dir, local_domain, alias NAME = address), or the file
MAILGATE_SENDMAIL_CONF names; MAILGATE_URL, MAILGATE_TOKEN and
MAILGATE_TOKEN_FILE override it.
Exit status from sysexits.h: 0 sent (or spooled), 64 usage, 65 invalid
message, 67 unknown local name, 75 try later, 77 not allowed, 78 bad config.
`

// Env is what one run of the command sees.
type Env struct {
	Args   []string // the arguments after the command name
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Now    func() time.Time
	// HTTP is the client for the server; nil means one with Timeout.
	HTTP *http.Client
	// Version goes into the User-Agent.
	Version string
}

// Timeout bounds one submission: long enough for the server's own wait for
// Redis (about 10 s) and a slow link, short enough that cron is not held.
const Timeout = 60 * time.Second

// Main runs the command and returns its exit status. Every failure is one
// line on stderr.
func Main(env Env) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	code, err := run(env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailgate sendmail: %s\n", oneLine(err.Error()))
	}
	return code
}

func run(env Env) (int, error) {
	o, err := Parse(env.Args)
	if err != nil {
		return ExitUsage, err
	}
	if o.Help {
		fmt.Fprint(env.Stdout, Usage)
		return ExitOK, nil
	}
	if o.Mode == ModeNewAliases {
		return ExitOK, nil // mailgate has no aliases database; alias lines live in sendmail.conf
	}
	// MAILGATE_SENDMAIL_CONF serves callers that run sendmail by path alone
	// (mail's "set sendmail=", a PHP pool's environment).
	path, explicit := DefaultConfPath, true
	switch {
	case o.ConfigPath != "":
		path = o.ConfigPath
	case env.Getenv("MAILGATE_SENDMAIL_CONF") != "":
		path = env.Getenv("MAILGATE_SENDMAIL_CONF")
	default:
		explicit = false
	}
	c, err := LoadConf(path, explicit, env.Getenv)
	if err != nil {
		return exitFor(err), err
	}
	spool := Spool{Dir: c.SpoolDir, Now: env.Now}
	if o.Mode == ModeQueue {
		return listQueue(env, spool)
	}
	tok, err := c.AppToken()
	if err != nil {
		return exitFor(err), err
	}
	hc := env.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: Timeout}
	}
	client := &Client{URL: c.URL, Token: tok, HTTP: hc, UserAgent: "mailgate-sendmail/" + env.Version}
	ctx := context.Background()

	if o.Flush {
		return flush(ctx, env, spool, client)
	}

	if o.Mode == ModeSMTP {
		return serveSMTP(ctx, env, c, spool, client)
	}

	raw, err := ReadMessage(env.Stdin, o.IgnoreDots)
	if err != nil {
		return ExitIOErr, err
	}
	p, err := Prepare(raw, o, c)
	if err != nil {
		return exitFor(err), err
	}
	d := deliver(ctx, env, spool, client, p)
	if d.Code == ExitOK && d.ID != "" && o.Verbose {
		fmt.Fprintf(env.Stderr, "mailgate sendmail: queued as %s\n", d.ID)
	}
	return d.Code, d.Err
}

// delivery is how one message ended: sent (ID), spooled (Spooled), or not
// (Err, with Code from sysexits.h).
type delivery struct {
	Code    int
	ID      string
	Spooled string
	Err     error
}

// deliver submits a prepared message and, when the server cannot take it
// now and a spool is configured, spools it.
func deliver(ctx context.Context, env Env, spool Spool, client *Client, p *Prepared) delivery {
	key, err := newKey()
	if err != nil {
		return delivery{Code: ExitSoftware, Err: err}
	}
	res := client.Submit(ctx, key, p.To, p.Body)
	code, temporary := res.Exit()
	switch {
	case code == ExitOK:
		return delivery{Code: ExitOK, ID: res.ID}
	case temporary && spool.Dir != "":
		file, err := spool.Put(Entry{Key: key, To: p.To, Reason: res.Reason}, p.Body)
		if err != nil {
			return delivery{Code: ExitTempFail, Err: fmt.Errorf("%s; and the spool failed too, the message is NOT kept: %v", res.Reason, err)}
		}
		fmt.Fprintf(env.Stderr, "mailgate sendmail: %s; spooled as %s, `mailgate sendmail --flush` sends it\n", res.Reason, file)
		return delivery{Code: ExitOK, Spooled: file}
	}
	return delivery{Code: code, Err: errors.New(res.Reason)}
}

func flush(ctx context.Context, env Env, spool Spool, client *Client) (int, error) {
	if spool.Dir == "" {
		return ExitConfig, &ConfError{"--flush: no spool_dir in sendmail.conf"}
	}
	send := func(ctx context.Context, e Entry, msg []byte) Result {
		return client.Submit(ctx, e.Key, e.To, msg)
	}
	r, err := spool.Flush(ctx, send, func(file, outcome string) {
		fmt.Fprintf(env.Stderr, "mailgate sendmail: %s: %s\n", file, outcome)
	})
	if errors.Is(err, ErrFlushRunning) {
		fmt.Fprintln(env.Stderr, "mailgate sendmail: another flush is running; leaving the spool to it")
		return ExitOK, nil
	}
	if err != nil {
		return ExitIOErr, err
	}
	if r.Sent+r.Failed+r.Kept > 0 {
		fmt.Fprintf(env.Stderr, "mailgate sendmail: flush: %d sent, %d moved to failed/, %d kept\n", r.Sent, r.Failed, r.Kept)
	}
	if r.Kept > 0 {
		return ExitTempFail, nil
	}
	return ExitOK, nil
}

func listQueue(env Env, spool Spool) (int, error) {
	if spool.Dir == "" {
		fmt.Fprintln(env.Stdout, "Mail queue is empty (no spool_dir)")
		return ExitOK, nil
	}
	entries, err := spool.List()
	if err != nil {
		return ExitIOErr, err
	}
	if len(entries) == 0 {
		fmt.Fprintln(env.Stdout, "Mail queue is empty")
		return ExitOK, nil
	}
	for _, e := range entries {
		fmt.Fprintf(env.Stdout, "%s  %s  %v  %s\n", e.Key, e.SpooledAt.Format(time.RFC3339), e.To, e.Reason)
	}
	return ExitOK, nil
}

// exitFor maps the package's error types to sysexits.h.
func exitFor(err error) int {
	var (
		u *UsageError
		c *ConfError
		n *NoUserError
		d *DataError
	)
	switch {
	case errors.As(err, &u):
		return ExitUsage
	case errors.As(err, &c):
		return ExitConfig
	case errors.As(err, &n):
		return ExitNoUser
	case errors.As(err, &d):
		return ExitDataErr
	}
	return ExitSoftware
}

// newKey is a fresh Idempotency-Key: one per message, kept with it in the
// spool so every retry of the message carries it.
func newKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return "sendmail-" + hex.EncodeToString(b), nil
}
