package delivery

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/routehealth"
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
	return queue.Outcome{Status: queue.StatusQueued, Due: w.now(), Detail: heldPrefix(w.route.Name) + reason}
}

// heldPrefix starts the detail of a message handed back by a held route.
func heldPrefix(route string) string { return "route " + route + " is held, the message waits: " }

// applyHold records a hold decided for job in the shared route state.
func (w *Worker) applyHold(ctx context.Context, job *queue.Job, h *holdAction) {
	if h == nil || !w.policy.HoldRoutes {
		return
	}
	switch {
	case h.route:
		if err := w.health.Hold(ctx, w.route.Name, h.reason); err != nil {
			w.log.Error("cannot hold the route", "err", err)
			return
		}
		w.holds.setHeld(true)
		w.closeConn()
		w.log.Error("route held: its messages stay queued until a probe succeeds", "reason", h.reason)
	case h.mailbox:
		mbox := mailbox.Of(w.route, job.From)
		w.holds.forget(mbox)
		if err := w.health.HoldMailbox(ctx, w.route.Name, mbox, h.until, h.reason); err != nil {
			w.log.Error("cannot make the mailbox wait", "mailbox", mbox, "err", err)
			return
		}
		w.closeConn()
		w.log.Warn("mailbox waits for its quota window", "mailbox", mbox, "until", h.until)
	}
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
		w.holds.setHeld(false)
		w.log.Info("route released: the probe succeeded, delivery resumes")
	}
}

// holdCache remembers for a second what the shared route state said: whether
// the route is held and until when each mailbox waits. A busy worker then
// asks Redis once a second, not before every message. Without route health
// (hold policy off) nothing is ever held.
type holdCache struct {
	health *routehealth.Health // nil: nothing is held
	route  string
	now    func() time.Time

	held        bool
	heldChecked time.Time
	waits       map[string]cachedWait // by mailbox
}

type cachedWait struct {
	until, checked time.Time
	reason         string
}

// holdCacheFor is how long a cached answer is trusted.
const holdCacheFor = time.Second

// routeHeld tells, from a state at most holdCacheFor old, whether the route
// is held.
func (c *holdCache) routeHeld(ctx context.Context) bool {
	if c.health == nil {
		return false
	}
	if c.now().Sub(c.heldChecked) < holdCacheFor {
		return c.held
	}
	held, _, _, err := c.health.State(ctx, c.route)
	if err != nil {
		return c.held // Redis trouble: the claim that follows will say so
	}
	c.setHeld(held)
	return held
}

// heldNow asks the shared state afresh, for a decision that must not rest
// on a cached answer (before a new connection); the reason when held.
func (c *holdCache) heldNow(ctx context.Context) (bool, string) {
	if c.health == nil {
		return false, ""
	}
	held, reason, _, err := c.health.State(ctx, c.route)
	if err != nil || !held {
		return false, ""
	}
	c.setHeld(true)
	return true, reason
}

// setHeld records what this worker itself learnt or did.
func (c *holdCache) setHeld(held bool) { c.held, c.heldChecked = held, c.now() }

// forget drops what is cached for mbox.
func (c *holdCache) forget(mbox string) { delete(c.waits, mbox) }

// mailboxWait tells until when mbox must wait for its quota, and why (zero
// when it need not).
func (c *holdCache) mailboxWait(ctx context.Context, mbox string) (time.Time, string) {
	if c.health == nil {
		return time.Time{}, ""
	}
	now := c.now()
	w, ok := c.waits[mbox]
	if !ok || now.Sub(w.checked) >= holdCacheFor {
		until, reason, err := c.health.MailboxWait(ctx, c.route, mbox)
		if err != nil {
			return time.Time{}, ""
		}
		if c.waits == nil || len(c.waits) > 1000 {
			c.waits = map[string]cachedWait{}
		}
		w = cachedWait{until: until, checked: now, reason: reason}
		c.waits[mbox] = w
	}
	if !w.until.After(now) {
		return time.Time{}, ""
	}
	return w.until, w.reason
}
