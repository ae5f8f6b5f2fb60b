package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
)

// queueFlags are the flags every `mailgate queue` command takes.
type queueFlags struct {
	config, route string
	json          bool
	all           bool
	limit         int
}

// cmdQueue manages a route's dead letters straight in Redis:
// `queue failed` lists them, `queue requeue` and `queue delete` act on one
// (ID) or on all of them (--all).
func cmdQueue(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "failed" && args[0] != "requeue" && args[0] != "delete") {
		return usageError{"queue takes failed, requeue or delete"}
	}
	sub := args[0]
	var f queueFlags
	fs := newFlags("queue "+sub, stderr)
	fs.StringVar(&f.config, "config", "", "configuration file")
	fs.StringVar(&f.route, "route", "", "the route whose messages to manage")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	if sub == "failed" {
		fs.IntVar(&f.limit, "limit", 100, "show at most this many, the most recent first; 0 shows all")
	} else {
		fs.BoolVar(&f.all, "all", false, "every failed message of the route instead of one ID")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, err := loadConfig(f.config, getenv)
	if err != nil {
		return err
	}
	if err := checkRoute(cfg, f.route); err != nil {
		return err
	}
	var id string
	switch {
	case sub == "failed" && len(pos) > 0:
		return usageError{"queue failed takes no arguments"}
	case sub == "failed" && f.limit < 0:
		return usageError{"--limit must be 0 or more"}
	case sub == "failed":
	case f.all && len(pos) > 0, !f.all && len(pos) != 1:
		return usageError{"queue " + sub + " takes one message ID, or --all"}
	case !f.all:
		id = pos[0]
	}

	rdb, err := gateway.NewRedisClient(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	q := queue.New(rdb, queue.Options{Prefix: cfg.Redis.KeyPrefix, Retention: cfg.Retention})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	switch sub {
	case "failed":
		return queueFailed(ctx, q, f, stdout, stderr)
	case "requeue":
		return queueChange(ctx, f, id, "requeued", stdout, q.Requeue, q.RequeueAll)
	default:
		return queueChange(ctx, f, id, "deleted", stdout, q.Delete, q.DeleteAll)
	}
}

// parseInterspersed parses fs from args and returns the positional
// arguments, which may come before, between or after the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func checkRoute(cfg *config.Config, route string) error {
	names := make([]string, len(cfg.Routes))
	for i, r := range cfg.Routes {
		names[i] = r.Name
	}
	if route == "" {
		return usageError{"--route NAME is required; routes are: " + strings.Join(names, ", ")}
	}
	if cfg.Route(route) == nil {
		return usageError{fmt.Sprintf("no route %q; routes are: %s", route, strings.Join(names, ", "))}
	}
	return nil
}

// failedMessage is a listed message with its app, which the status API
// leaves out because an app only sees its own.
type failedMessage struct {
	*queue.Status
	App string `json:"app"`
}

func queueFailed(ctx context.Context, q *queue.Queue, f queueFlags, stdout, stderr io.Writer) error {
	var msgs []queue.Status
	cursor := ""
	for f.limit == 0 || len(msgs) < f.limit {
		n := 500
		if f.limit > 0 {
			n = min(n, f.limit-len(msgs))
		}
		page, next, err := q.ListFailed(ctx, f.route, n, cursor)
		if err != nil {
			return err
		}
		msgs, cursor = append(msgs, page...), next
		if next == "" {
			break
		}
	}
	if f.json {
		out := struct {
			Messages []failedMessage `json:"messages"`
		}{Messages: make([]failedMessage, len(msgs))}
		for i := range msgs {
			out.Messages[i] = failedMessage{Status: &msgs[i], App: msgs[i].App}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(msgs) == 0 {
		fmt.Fprintf(stdout, "no failed messages on route %s\n", f.route)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAPP\tFAILED AT\tLAST RESPONSE")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.App, m.UpdatedAt.UTC().Format(time.RFC3339), lastResponse(m))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cursor != "" {
		fmt.Fprintf(stderr, "showing the %d most recent; --limit 0 shows all\n", len(msgs))
	}
	return nil
}

// lastResponse is Exchange's last reply, or the last event's detail when
// there was none (a connection that kept failing).
func lastResponse(m queue.Status) string {
	s := ""
	switch {
	case m.LastResponse != nil:
		s = fmt.Sprintf("%d %s %s", m.LastResponse.Code, m.LastResponse.EnhancedCode, m.LastResponse.Text)
	case len(m.Events) > 0:
		s = m.Events[len(m.Events)-1].Detail
	}
	return strings.Join(strings.Fields(s), " ")
}

// queueChange requeues or deletes one message, or with --all every failed
// message of the route.
func queueChange(ctx context.Context, f queueFlags, id, done string, stdout io.Writer,
	one func(ctx context.Context, route, id string) error,
	all func(ctx context.Context, route string) (int, error)) error {
	n := 1
	if f.all {
		var err error
		if n, err = all(ctx, f.route); err != nil {
			return fmt.Errorf("%w (%s %d before the error)", err, done, n)
		}
	} else {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := one(tctx, f.route, id)
		switch {
		case errors.Is(err, queue.ErrNotFound) && done == "requeued":
			return fmt.Errorf("no failed message %s on route %s that can be requeued", id, f.route)
		case errors.Is(err, queue.ErrNotFound):
			return fmt.Errorf("no message %s on route %s", id, f.route)
		case errors.Is(err, queue.ErrInFlight):
			return fmt.Errorf("message %s is being delivered right now; try again once the attempt is recorded", id)
		case err != nil:
			return err
		}
	}
	switch {
	case f.json:
		return json.NewEncoder(stdout).Encode(map[string]int{done: n})
	case f.all:
		fmt.Fprintf(stdout, "%s %d failed message(s) of route %s\n", done, n, f.route)
	default:
		fmt.Fprintf(stdout, "%s %s\n", done, id)
	}
	return nil
}
