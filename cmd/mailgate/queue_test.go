package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
)

// queueBundle is a configuration pointing at a real redis-server, and the
// queue on it that the test fills.
type queueBundle struct {
	t   *testing.T
	cfg string
	q   *queue.Queue
}

func setupQueue(t *testing.T) queueBundle {
	t.Helper()
	srv := redistest.Start(t)
	cfg := writeConfig(t, validConfig+"redis:\n  url: \""+srv.URL()+"\"\n  key_prefix: mg\n")
	// The test's queue runs an hour behind, a second further per call, so
	// failures are ordered and already past for the command's own clock.
	var mu sync.Mutex
	at := time.Now().Add(-time.Hour)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); at = at.Add(time.Second); return at }
	return queueBundle{t: t, cfg: cfg, q: queue.New(srv.Client(), queue.Options{Prefix: "mg", Now: now})}
}

// run runs `mailgate queue args…` and returns the exit code and both outputs.
func (b queueBundle) run(args ...string) (int, string, string) {
	b.t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"queue"}, args...), &out, &errOut, env(map[string]string{"KEY": key, "MAILGATE_CONFIG": b.cfg}))
	return code, out.String(), errOut.String()
}

// enqueue stores a message as the API does.
func (b queueBundle) enqueue(subject string) string {
	b.t.Helper()
	id, _, err := b.q.Enqueue(context.Background(), queue.Message{App: "monitoring", Route: "m365",
		From: "alerts@alerts.contoso.com", HeaderFrom: "alerts@alerts.contoso.com",
		Recipients: []string{"ops@contoso.com"}, To: []string{"ops@contoso.com"},
		Subject: subject, Body: []byte("Subject: " + subject + "\r\n\r\nx\r\n")})
	if err != nil {
		b.t.Fatal(err)
	}
	return id
}

// failed stores a message and fails it as a worker does on a 5xx. Nothing
// else may be queued then.
func (b queueBundle) failed(subject string) string {
	b.t.Helper()
	ctx := context.Background()
	id := b.enqueue(subject)
	j, err := b.q.Claim(ctx, "m365", time.Minute)
	if err != nil || j == nil || j.ID != id {
		b.t.Fatalf("claim: %v %v", j, err)
	}
	err = b.q.Complete(ctx, j, queue.Outcome{Status: queue.StatusFailed, Attempted: true,
		Response: &queue.Response{Code: 550, EnhancedCode: "5.7.60", Text: "SMTP; Client does not have permissions\r\nto send as this sender"}})
	if err != nil {
		b.t.Fatal(err)
	}
	return id
}

func (b queueBundle) status(id string) string {
	b.t.Helper()
	st, err := b.q.Get(context.Background(), "m365", id)
	if errors.Is(err, queue.ErrNotFound) {
		return "gone"
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return st.Status
}

func TestQueueFailedListsDeadLetters(t *testing.T) {
	t.Parallel()
	b := setupQueue(t)
	if code, out, errOut := b.run("failed", "--route", "m365"); code != 0 || out != "no failed messages on route m365\n" {
		t.Fatalf("empty list: exit %d, %q, %q", code, out, errOut)
	}
	first, second := b.failed("one"), b.failed("two")

	code, out, errOut := b.run("failed", "--route", "m365")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "LAST RESPONSE") {
		t.Fatalf("table:\n%s", out)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, " monitoring ") || !strings.HasSuffix(l, "550 5.7.60 SMTP; Client does not have permissions to send as this sender") {
			t.Fatalf("row %q", l)
		}
	}
	if !strings.HasPrefix(lines[1], second) || !strings.HasPrefix(lines[2], first) {
		t.Fatalf("not newest first:\n%s", out)
	}

	code, out, errOut = b.run("failed", "--route", "m365", "--limit", "1")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("--limit 1: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = b.run("failed", "--route", "m365", "--json")
	var doc struct {
		Messages []map[string]any `json:"messages"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Messages) != 2 {
		t.Fatalf("--json: exit %d, %s %s", code, out, errOut)
	}
	if m := doc.Messages[0]; m["id"] != second || m["app"] != "monitoring" || m["status"] != "failed" || m["subject"] != "two" {
		t.Fatalf("--json message: %v", m)
	}
}

func TestQueueRequeueAndDelete(t *testing.T) {
	t.Parallel()
	b := setupQueue(t)
	a, c := b.failed("a"), b.failed("c")

	// The ID may come before the flags too.
	if code, out, errOut := b.run("requeue", a, "--route", "m365"); code != 0 || out != "requeued "+a+"\n" {
		t.Fatalf("requeue: exit %d, %q, %q", code, out, errOut)
	}
	if got := b.status(a); got != queue.StatusQueued {
		t.Fatalf("status after requeue = %s", got)
	}
	code, _, errOut := b.run("requeue", "--route", "m365", a)
	if code != 1 || !strings.Contains(errOut, "no failed message "+a) {
		t.Fatalf("requeue of a queued message: exit %d, %q", code, errOut)
	}

	if code, out, errOut := b.run("delete", "--route", "m365", a); code != 0 || out != "deleted "+a+"\n" {
		t.Fatalf("delete: exit %d, %q, %q", code, out, errOut)
	}
	if got := b.status(a); got != "gone" {
		t.Fatalf("status after delete = %s", got)
	}
	if code, _, errOut := b.run("delete", "--route", "m365", a); code != 1 || !strings.Contains(errOut, "no message "+a) {
		t.Fatalf("second delete: exit %d, %q", code, errOut)
	}

	d := b.failed("d")
	if code, out, errOut := b.run("requeue", "--route", "m365", "--all", "--json"); code != 0 || out != `{"requeued":2}`+"\n" {
		t.Fatalf("requeue --all: exit %d, %q, %q", code, out, errOut)
	}
	if b.status(c) != queue.StatusQueued || b.status(d) != queue.StatusQueued {
		t.Fatalf("after requeue --all: %s, %s", b.status(c), b.status(d))
	}
	// A queued message can be deleted too: it is then never sent.
	for _, id := range []string{c, d} {
		if code, _, errOut := b.run("delete", "--route", "m365", id); code != 0 {
			t.Fatalf("delete of a queued message: exit %d, %q", code, errOut)
		}
	}

	e := b.failed("e")
	waiting := b.enqueue("waiting")
	if code, out, errOut := b.run("delete", "--route", "m365", "--all"); code != 0 || out != "deleted 1 failed message(s) of route m365\n" {
		t.Fatalf("delete --all: exit %d, %q, %q", code, out, errOut)
	}
	if b.status(e) != "gone" || b.status(waiting) != queue.StatusQueued {
		t.Fatalf("after delete --all: e %s, waiting %s", b.status(e), b.status(waiting))
	}
}

func TestQueueUsageErrors(t *testing.T) {
	t.Parallel()
	b := setupQueue(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "queue takes failed, requeue or delete"},
		{[]string{"purge"}, "queue takes failed, requeue or delete"},
		{[]string{"failed"}, "--route NAME is required; routes are: m365"},
		{[]string{"failed", "--route", "nope"}, `no route "nope"; routes are: m365`},
		{[]string{"requeue", "--route", "m365"}, "takes one message ID, or --all"},
		{[]string{"delete", "--route", "m365", "--all", "x"}, "takes one message ID, or --all"},
		{[]string{"failed", "--route", "m365", "x"}, "takes no arguments"},
	} {
		code, _, errOut := b.run(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("queue %v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
