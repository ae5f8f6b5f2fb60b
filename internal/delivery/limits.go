package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/queue"
)

func (w *Worker) routeLimits() limits.Limits {
	l := w.route.Limits
	return limits.Limits{MessagesPerMinute: l.MessagesPerMinute, MaxConnections: l.MaxConnections, RecipientsPerDay: l.RecipientsPerDay}
}

// ensureSlot holds a connection slot for mailbox, across all instances, or
// says how long to wait for one.
func (w *Worker) ensureSlot(ctx context.Context, mbox string) (time.Duration, error) {
	if w.limiter == nil || w.route.Limits.MaxConnections <= 0 {
		return 0, nil
	}
	key := mailbox.Limits(w.route, mbox)
	if w.slot != nil && w.slotMailbox == key {
		return 0, nil
	}
	w.releaseSlot(ctx)
	lease, wait, err := w.limiter.AcquireConn(ctx, w.route.Name, key, w.route.Limits.MaxConnections, slotTTL)
	if err != nil {
		return 0, err
	}
	if lease == nil {
		if w.slotWaitSince.IsZero() {
			w.slotWaitSince = w.now()
		} else if waited := w.now().Sub(w.slotWaitSince); waited > slotTTL && !w.slotWaitLogged {
			w.log.Warn("waiting for a connection slot of the mailbox for longer than a slot lease lasts; "+
				"are other instances holding them all?", "mailbox", key, "waited", waited.Round(time.Second))
			w.slotWaitLogged = true
		}
		return max(wait, 50*time.Millisecond), nil
	}
	w.slotWaitSince, w.slotWaitLogged = time.Time{}, false
	w.slot, w.slotMailbox = lease, key
	w.slotLost.Store(false)
	w.slotDone = keepSlot(lease, &w.slotLost, w.log)
	return 0, nil
}

// keepSlot renews lease until the returned stop is called, and sets lost
// when the lease turns out to have expired and been removed.
func keepSlot(lease *limits.Lease, lost *atomic.Bool, log interface{ Warn(string, ...any) }) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(slotTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), slotTTL/3)
				err := lease.Renew(ctx)
				cancel()
				if errors.Is(err, limits.ErrLeaseLost) {
					log.Warn("a connection slot expired while held; the connection is closed before the next message")
					lost.Store(true)
					return
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (w *Worker) releaseSlot(ctx context.Context) {
	if w.slot == nil {
		return
	}
	w.slotDone()
	if err := w.slot.Release(context.WithoutCancel(ctx)); err != nil {
		w.log.Warn("could not release a connection slot; it expires by itself", "err", err)
	}
	w.slot, w.slotDone = nil, nil
}

// admit asks the shared per-mailbox limits whether job may be sent now. A
// positive wait hands the message back untouched.
func (w *Worker) admit(ctx context.Context, job *queue.Job) (time.Duration, error) {
	if w.limiter == nil {
		return 0, nil
	}
	return w.limiter.AdmitMessage(ctx, w.route.Name, mailbox.Limits(w.route, mailbox.Of(w.route, job.From)), len(job.Recipients), w.routeLimits())
}

// waitOutcome hands a message back because a limit says wait; the worker
// pauses too, so it does not take the next message only to hand it back.
func (w *Worker) waitOutcome(wait time.Duration, why string) queue.Outcome {
	// Jitter spreads the messages handed back by many workers.
	due := w.now().Add(wait + time.Duration(w.jitter()*float64(wait)/4))
	if mailbox.Fixed(w.route) {
		w.pauseUntil = due
	}
	// Waits are routine under load: logged at debug, and no event per wait.
	w.log.Debug("message handed back: a limit says wait", "why", why, "due", due)
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
	for _, m := range mailbox.Known(r) {
		u, err := l.Usage(ctx, r.Name, m)
		if err != nil {
			return nil, err
		}
		out[m] = u
	}
	return out, nil
}
