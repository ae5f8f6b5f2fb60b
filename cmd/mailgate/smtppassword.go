package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/smtppass"
)

// cmdSMTPPassword issues or revokes a short SMTP password. issue prints the
// password, and only it, on stdout, so it can be captured by a script; it
// is shown once and stored only as a hash.
func cmdSMTPPassword(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "issue" && args[0] != "revoke") {
		return usageError{"smtp-password takes issue or revoke"}
	}
	fs := newFlags("smtp-password "+args[0], stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	app := fs.String("app", "", "the app the password is for")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "issue" && (*app == "" || fs.NArg() != 0) {
		return usageError{"smtp-password issue takes --app ID"}
	}
	if args[0] == "revoke" && fs.NArg() != 1 {
		return usageError{"smtp-password revoke takes one PASSWORD_OR_ID"}
	}
	cfg, err := loadConfig(*cfgFlag, getenv)
	if err != nil {
		return err
	}
	if args[0] == "issue" && cfg.App(*app) == nil {
		return fmt.Errorf("no app %q in the configuration", *app)
	}
	rdb, err := gateway.NewRedisClient(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := smtppass.New(rdb, cfg.Redis.KeyPrefix, nil)
	if args[0] == "issue" {
		pw, id, err := store.Issue(ctx, *app)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "SMTP password %s for app %s; it is shown only now\n", id, *app)
		fmt.Fprintln(stdout, pw)
		return nil
	}
	id, err := store.Revoke(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s\n", id)
	return nil
}
