package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/queue"
)

// routeWide is the limiter's mailbox for routes without AUTH (connectors,
// plain SMTP): their limits apply to the route as a whole.
const routeWide = "*"

// errWaitSlot stops an attempt before it starts: every connection slot of
// the mailbox is taken (by this or another instance).
type errWaitSlot struct{ wait time.Duration }

func (e errWaitSlot) Error() string {
	return fmt.Sprintf("all connection slots of the mailbox are in use; retry in %s", e.wait)
}

// limitMailbox is the key Exchange's per-mailbox limits are kept under.
func (w *Worker) limitMailbox(mailbox string) string {
	if w.route.Auth.Mechanism == "" || mailbox == "" {
		return routeWide
	}
	return mailbox
}

// fixedMailbox reports whether every message of the route authenticates as
// the same mailbox, so a connection slot can be taken before a claim.
func (w *Worker) fixedMailbox() bool { return w.route.Auth.Username != config.FromMailbox }

func (w *Worker) routeLimits() limits.Limits {
	l := w.route.Limits
	return limits.Limits{MessagesPerMinute: l.MessagesPerMinute, MaxConnections: l.MaxConnections, RecipientsPerDay: l.RecipientsPerDay}
}

// ensureSlot holds a connection slot for mailbox, across all instances, or
// says how long to wait for one.
func (w *Worker) ensureSlot(ctx context.Context, mailbox string) (time.Duration, error) {
	if w.limiter == nil || w.route.Limits.MaxConnections <= 0 {
		return 0, nil
	}
	key := w.limitMailbox(mailbox)
	if w.slot != nil && w.slotMailbox == key {
		return 0, w.renewSlot(ctx)
	}
	w.releaseSlot(ctx)
	lease, wait, err := w.limiter.AcquireConn(ctx, w.route.Name, key, w.route.Limits.MaxConnections, limits.DefaultLeaseTTL)
	if err != nil {
		return 0, err
	}
	if lease == nil {
		return max(wait, 50*time.Millisecond), nil
	}
	w.slot, w.slotMailbox, w.slotRenewed = lease, key, w.now()
	return 0, nil
}

// renewSlot keeps the slot alive while the worker holds it.
func (w *Worker) renewSlot(ctx context.Context) error {
	if w.slot == nil || w.now().Sub(w.slotRenewed) < limits.DefaultLeaseTTL/3 {
		return nil
	}
	if err := w.slot.Renew(ctx); err != nil {
		if errors.Is(err, limits.ErrLeaseLost) {
			// Our slot expired and may be someone else's now: give up the
			// connection with it.
			w.slot = nil
			w.closeConn()
		}
		return err
	}
	w.slotRenewed = w.now()
	return nil
}

func (w *Worker) releaseSlot(ctx context.Context) {
	if w.slot == nil {
		return
	}
	if err := w.slot.Release(context.WithoutCancel(ctx)); err != nil {
		w.log.Warn("could not release a connection slot; it expires by itself", "err", err)
	}
	w.slot = nil
}

// admit asks the shared per-mailbox limits whether job may be sent now. A
// positive wait hands the message back untouched.
func (w *Worker) admit(ctx context.Context, job *queue.Job) (time.Duration, error) {
	if w.limiter == nil {
		return 0, nil
	}
	return w.limiter.AdmitMessage(ctx, w.route.Name, w.limitMailbox(w.mailbox(job)), len(job.Recipients), w.routeLimits())
}

// waitOutcome hands a message back because a limit says wait; the worker
// pauses too, so it does not take the next message only to hand it back.
func (w *Worker) waitOutcome(wait time.Duration, why string) queue.Outcome {
	// Jitter spreads the messages handed back by many workers.
	due := w.now().Add(wait + time.Duration(w.jitter()*float64(wait)/4))
	if w.fixedMailbox() {
		w.pauseUntil = due
	}
	return queue.Outcome{Status: queue.StatusQueued, Due: due}
}

// tooManyForADay fails a message that could never be sent: it has more
// recipients than the mailbox may send to in a day.
func (w *Worker) tooManyForADay(job *queue.Job) queue.Outcome {
	return queue.Outcome{Status: queue.StatusFailed, Attempted: false,
		Detail: fmt.Sprintf("%d recipients exceed what the mailbox may send to in a day (%d); split the message",
			len(job.Recipients), w.route.Limits.RecipientsPerDay)}
}

// UsageOf reports the limit usage of a route's mailboxes, for the API.
func UsageOf(ctx context.Context, l *limits.Limiter, r *config.Route) (map[string]limits.Usage, error) {
	out := map[string]limits.Usage{}
	var mailboxes []string
	switch {
	case r.Auth.Mechanism == "":
		mailboxes = []string{routeWide}
	case r.Auth.Username == config.FromMailbox:
		mailboxes = r.Mailboxes
	default:
		mailboxes = []string{r.Auth.Username}
	}
	for _, m := range mailboxes {
		u, err := l.Usage(ctx, r.Name, m)
		if err != nil {
			return nil, err
		}
		out[m] = u
	}
	return out, nil
}
