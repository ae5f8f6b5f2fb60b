package delivery

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/queue"
)

// holdAction is what decide asks of the shared route state.
type holdAction struct {
	route   bool // hold the whole route
	mailbox bool // make the job's mailbox wait until `until`
	until   time.Time
	reason  string
}

// errRouteHeld stops an attempt before it starts: the route is held.
type errRouteHeld struct{ reason string }

func (e errRouteHeld) Error() string { return "route held: " + e.reason }

// mailboxOnly reports whether an AUTH refusal concerns one mailbox of a
// {from} route rather than the whole route: Exchange says "for the Tenant"
// when SMTP AUTH is off tenant-wide, and a block or a bad app credential
// fails every mailbox alike.
func (w *Worker) mailboxOnly(se *StepError) bool {
	if mailbox.Fixed(w.route) || se.Stage != StageAuth || se.Reply == nil {
		return false
	}
	text := strings.ToLower(se.Reply.Text)
	return se.Reply.Enhanced == "5.7.139" && !strings.Contains(text, "tenant")
}

// handBack returns a message to the queue untouched — no attempt counted —
// because its route cannot deliver anything right now.
func (w *Worker) handBack(reason string) queue.Outcome {
	return queue.Outcome{Status: queue.StatusQueued, Due: w.now(),
		Detail: "route " + w.route.Name + " is held, the message waits: " + reason}
}

// applyHold records a hold decided for job in the shared route state.
func (w *Worker) applyHold(ctx context.Context, job *queue.Job, h *holdAction) {
	if h == nil || w.health == nil {
		return
	}
	switch {
	case h.route:
		if err := w.health.Hold(ctx, w.route.Name, h.reason); err != nil {
			w.log.Error("cannot hold the route", "err", err)
			return
		}
		w.held, w.heldChecked = true, w.now()
		w.closeConn()
		w.log.Error("route held: its messages stay queued until a probe succeeds", "reason", h.reason)
	case h.mailbox:
		mbox := mailbox.Of(w.route, job.From)
		delete(w.waits, mbox)
		if err := w.health.HoldMailbox(ctx, w.route.Name, mbox, h.until, h.reason); err != nil {
			w.log.Error("cannot make the mailbox wait", "mailbox", mbox, "err", err)
			return
		}
		w.closeConn()
		w.log.Warn("mailbox waits for its quota window", "mailbox", mbox, "until", h.until)
	}
}

// routeHeld tells, from a state at most a second old, whether the route is held.
func (w *Worker) routeHeld(ctx context.Context) bool {
	if w.health == nil {
		return false
	}
	if w.now().Sub(w.heldChecked) < time.Second {
		return w.held
	}
	held, _, _, err := w.health.State(ctx, w.route.Name)
	if err != nil {
		return w.held // Redis trouble: the claim that follows will say so
	}
	w.held, w.heldChecked = held, w.now()
	return held
}

// probe tries the held route once (connect, STARTTLS, AUTH) when no other
// worker of any instance did so within the probe interval, and releases the
// route when it works again.
func (w *Worker) probe(ctx context.Context) {
	ok, err := w.health.TryProbe(ctx, w.route.Name, w.policy.ProbeInterval)
	if err != nil || !ok {
		return
	}
	c, err := w.dialer.Dial(ctx, mailbox.Probe(w.route), nil)
	if err != nil {
		reason := err.Error()
		var se *StepError
		if errors.As(err, &se) {
			reason = withHint(se.Error(), Diagnose(w.route, se).Hint)
		}
		w.log.Warn("route still held: probe failed", "reason", reason)
		_ = w.health.Hold(ctx, w.route.Name, reason)
		return
	}
	c.Close()
	if err := w.health.Release(ctx, w.route.Name); err == nil {
		w.held, w.heldChecked = false, w.now()
		w.log.Info("route released: the probe succeeded, delivery resumes")
	}
}

type cachedWait struct {
	until, checked time.Time
	reason         string
}

// mailboxWait tells whether the job's mailbox must wait for its quota.
func (w *Worker) mailboxWait(ctx context.Context, job *queue.Job) (time.Time, string) {
	if w.health == nil {
		return time.Time{}, ""
	}
	mbox, now := mailbox.Of(w.route, job.From), w.now()
	c, ok := w.waits[mbox]
	if !ok || now.Sub(c.checked) >= time.Second {
		until, reason, err := w.health.MailboxWait(ctx, w.route.Name, mbox)
		if err != nil {
			return time.Time{}, ""
		}
		if w.waits == nil || len(w.waits) > 1000 {
			w.waits = map[string]cachedWait{}
		}
		c = cachedWait{until: until, checked: now, reason: reason}
		w.waits[mbox] = c
	}
	if !c.until.After(now) {
		return time.Time{}, ""
	}
	return c.until, c.reason
}
