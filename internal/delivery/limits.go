package delivery

import (
	"context"
	"fmt"
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

// admit asks the shared per-mailbox limits whether job may be sent now. A
// positive wait hands the message back untouched.
func (w *Worker) admit(ctx context.Context, job *queue.Job) (time.Duration, error) {
	if w.limiter == nil {
		return 0, nil
	}
	if p := w.pre; p != nil {
		w.pre = nil
		if p.id == job.ID {
			return p.wait, p.err
		}
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
	return queue.Outcome{Status: queue.StatusQueued, Due: due, LaneWaits: true}
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
