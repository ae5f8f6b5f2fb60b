package delivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/mailbox"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/routehealth"
)

// Policy is the timing of a worker.
type Policy struct {
	MaxAge         time.Duration
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	Lease          time.Duration // the visibility timeout
	IdleTimeout    time.Duration
	PollInterval   time.Duration
	// ProbeInterval is how often a held route is probed (across all
	// instances together).
	ProbeInterval time.Duration
	// QuotaWait is how long a mailbox whose daily recipient quota Exchange
	// reported exhausted waits before it is tried again.
	QuotaWait time.Duration
	// HoldRoutes holds a route on configuration errors and blocks (its
	// messages wait untouched, one worker of all instances probes it) and
	// makes a mailbox wait when Exchange reports its quota exhausted. Off,
	// such replies are retried like any temporary failure. It needs
	// WorkerOptions.Health, the state shared by every instance.
	HoldRoutes bool
}

// PolicyFrom reads the worker timing from the configuration.
func PolicyFrom(d config.Delivery) Policy {
	return Policy{MaxAge: d.MaxAge, BackoffInitial: d.BackoffInitial, BackoffMax: d.BackoffMax,
		Lease: d.VisibilityTimeout, IdleTimeout: d.IdleTimeout, PollInterval: d.PollInterval,
		ProbeInterval: d.ProbeInterval, QuotaWait: time.Hour, HoldRoutes: true}
}

// Worker delivers the messages of one route, one at a time, over at most
// one SMTP connection.
type Worker struct {
	route   *config.Route
	queue   *queue.Queue
	dialer  *Dialer
	policy  Policy
	now     func() time.Time
	jitter  func() float64 // in [0, 1)
	log     *slog.Logger
	hooks   *Hooks
	health  *routehealth.Health // set when policy.HoldRoutes
	limiter *limits.Limiter
	metrics *metrics.Delivery

	conn  *Conn
	slot  slotKeeper // the connection slot conn counts against
	holds holdCache
	// pauseUntil keeps the worker from claiming while its mailbox's limits
	// say wait.
	pauseUntil time.Time
	lastActive time.Time
	// redisIsDown is set while Redis cannot be reached, so an outage is
	// logged once, not every second.
	redisIsDown bool
}

// Hooks observe a worker; every field may be nil.
type Hooks struct {
	// Done is called after each message's outcome was recorded.
	Done func(job *queue.Job, o queue.Outcome)
}

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	Route  *config.Route
	Queue  *queue.Queue
	Dialer *Dialer
	Policy Policy
	Now    func() time.Time
	Jitter func() float64
	Log    *slog.Logger
	Hooks  *Hooks
	// Health is the route state shared by every instance; required when
	// Policy.HoldRoutes.
	Health *routehealth.Health
	// Limiter, when set, keeps Exchange's per-mailbox limits across all
	// instances (route.limits); without it only this worker's own pace applies.
	Limiter *limits.Limiter
	// Metrics, when set, records outcomes and attempt durations.
	Metrics *metrics.Delivery
}

// NewWorker returns a worker for one route.
func NewWorker(o WorkerOptions) *Worker {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Hooks == nil {
		o.Hooks = &Hooks{}
	}
	if o.Policy.ProbeInterval <= 0 {
		o.Policy.ProbeInterval = time.Minute
	}
	if o.Policy.QuotaWait <= 0 {
		o.Policy.QuotaWait = time.Hour
	}
	if o.Policy.HoldRoutes && o.Health == nil {
		panic("delivery: Policy.HoldRoutes needs WorkerOptions.Health")
	}
	if !o.Policy.HoldRoutes {
		o.Health = nil
	}
	log := o.Log.With("route", o.Route.Name)
	return &Worker{route: o.Route, queue: o.Queue, dialer: o.Dialer, policy: o.Policy,
		now: o.Now, jitter: o.Jitter, log: log, hooks: o.Hooks, health: o.Health, limiter: o.Limiter, metrics: o.Metrics,
		slot:  slotKeeper{limiter: o.Limiter, route: o.Route, now: o.Now, log: log},
		holds: holdCache{health: o.Health, route: o.Route.Name, now: o.Now}}
}

// Run delivers until ctx is cancelled. A message being delivered when ctx
// ends is finished (within the SMTP timeouts) and its outcome recorded; no
// new one is taken.
func (w *Worker) Run(ctx context.Context) {
	defer w.closeConn()
	for ctx.Err() == nil {
		if w.holds.routeHeld(ctx) {
			w.closeConn()
			w.probe(ctx)
			sleep(ctx, min(w.policy.ProbeInterval, time.Second))
			continue
		}
		if wait := w.pauseUntil.Sub(w.now()); wait > 0 {
			sleep(ctx, wait)
			continue
		}
		if mailbox.Fixed(w.route) {
			// Take a connection slot before a message, so a worker without
			// one never holds a message it cannot send.
			wait, err := w.slot.ensure(ctx, mailbox.Probe(w.route))
			if err != nil {
				w.redisDown("taking a connection slot", err)
				sleep(ctx, time.Second)
				continue
			}
			if wait > 0 {
				sleep(ctx, wait)
				continue
			}
		}
		job, err := w.queue.Claim(ctx, w.route.Name, w.policy.Lease)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.redisDown("taking messages", err)
			sleep(ctx, time.Second)
			continue
		}
		w.redisUp()
		if job == nil {
			if (w.conn != nil || w.slot.held()) && w.now().Sub(w.lastActive) >= w.policy.IdleTimeout {
				w.closeConn()
			}
			sleep(ctx, w.policy.PollInterval)
			continue
		}
		// The delivery and its record run to the end even when ctx is
		// cancelled: a graceful stop must not abandon a message mid-DATA.
		w.process(context.WithoutCancel(ctx), job)
	}
}

func (w *Worker) process(ctx context.Context, job *queue.Job) {
	log := w.log.With("id", job.ID, "app", job.App, "attempt", job.Attempts+1)
	stop := w.keepLease(job)
	o := w.deliver(ctx, job)
	stop()
	w.lastActive = w.now()
	if err := w.record(ctx, job, o); err != nil {
		log.Error("could not record the outcome; the message will be delivered again after its lease expires",
			"status", o.Status, "err", err)
		return
	}
	outcome := o.Status
	if !o.Attempted && o.Status == queue.StatusQueued {
		outcome = "waiting"
	}
	w.metrics.Outcome(w.route.Name, outcome)
	if o.Attempted || o.Detail != "" {
		log.Info("delivery attempt", "status", o.Status, "detail", o.Detail)
	}
	if w.hooks.Done != nil {
		w.hooks.Done(job, o)
	}
}

// deliver checks the mailbox's quota wait, its connection slot and its
// limits, in that order (so a message handed back costs no limit budget),
// then attempts the delivery.
func (w *Worker) deliver(ctx context.Context, job *queue.Job) queue.Outcome {
	if until, reason := w.holds.mailboxWait(ctx, mailbox.Of(w.route, job.From)); !until.IsZero() {
		return queue.Outcome{Status: queue.StatusQueued, Due: until, Detail: "waiting: " + reason}
	}
	switch {
	case w.slot.wasLost():
		// The slot expired while held (Redis was away) and may be another
		// worker's now: a connection without a slot must not stay open.
		w.closeConn()
	case w.conn != nil && w.conn.Mailbox != mailbox.Of(w.route, job.From):
		w.closeConn() // its slot goes with it: never a connection without a slot
	case w.conn != nil && w.now().Sub(w.conn.LastUsed) >= w.policy.IdleTimeout:
		// Exchange may have closed it by now; the slot stays ours, so the
		// message is not handed back after its admission was counted.
		w.dropConn()
	}
	if w.conn == nil {
		if wait, err := w.slot.ensure(ctx, mailbox.Of(w.route, job.From)); err != nil || wait > 0 {
			if err != nil {
				wait = time.Second
			}
			return w.waitOutcome(wait, "connection slots")
		}
	}
	wait, err := w.admit(ctx, job)
	switch {
	case errors.Is(err, limits.ErrTooManyRecipients):
		return w.tooManyForADay(job)
	case err != nil:
		// Redis trouble: try again shortly; nothing was attempted.
		return w.waitOutcome(time.Second, err.Error())
	case wait > 0:
		return w.waitOutcome(wait, "per-mailbox limit")
	}
	started := w.now()
	res, err := w.attempt(ctx, job)
	o, hold := w.decide(job, res, err)
	if o.Attempted {
		w.metrics.Attempt(w.route.Name, w.now().Sub(started))
	}
	w.applyHold(ctx, job, hold)
	return o
}

// record stores the outcome, retrying while Redis is unreachable: an
// outcome lost here means a second delivery later. While Redis is down no
// other worker can take the message over either, and once it is back the
// queue accepts a late outcome as long as nobody has taken the message
// again, so the retries go on well past the lease.
func (w *Worker) record(ctx context.Context, job *queue.Job, o queue.Outcome) error {
	deadline := w.now().Add(max(w.policy.Lease, 5*time.Minute))
	for {
		err := w.queue.Complete(ctx, job, o)
		if err == nil || errors.Is(err, queue.ErrLeaseLost) || w.now().After(deadline) {
			if err == nil {
				w.redisUp()
			}
			return err
		}
		w.redisDown("recording an outcome", err)
		sleep(ctx, 500*time.Millisecond)
	}
}

// redisDown logs, once per outage, that the worker cannot reach Redis.
func (w *Worker) redisDown(doing string, err error) {
	if !w.redisIsDown {
		w.log.Error("Redis unreachable; retrying", "while", doing, "err", err)
		w.redisIsDown = true
	}
}

// redisUp logs the end of an outage.
func (w *Worker) redisUp() {
	if w.redisIsDown {
		w.log.Info("Redis reachable again")
		w.redisIsDown = false
	}
}

// keepLease extends the job's lease while the attempt runs, so only a dead
// worker's messages are taken over.
func (w *Worker) keepLease(job *queue.Job) (stop func()) {
	return renewEvery(w.policy.Lease/3, func(ctx context.Context) bool {
		if errors.Is(w.queue.Extend(ctx, job, w.policy.Lease), queue.ErrLeaseLost) {
			w.log.Warn("lease lost while delivering", "id", job.ID)
			return true
		}
		return false
	})
}

// attempt sends job over the worker's connection, opening one when needed.
// A reused connection that the server closed while idle is reopened once.
func (w *Worker) attempt(ctx context.Context, job *queue.Job) (Result, error) {
	mbox := mailbox.Of(w.route, job.From)
	reused := w.conn != nil
	for {
		if w.conn == nil {
			// Another worker may have held the route a moment ago: ask
			// afresh before each new connection, so a held route gets no
			// more failed AUTHs than the one that held it.
			if held, reason := w.holds.heldNow(ctx); held {
				return Result{}, errRouteHeld{reason}
			}
			c, err := w.dialer.Dial(ctx, mbox, nil)
			if err != nil {
				return Result{}, err
			}
			w.conn = c
		}
		res, err := w.conn.Send(job.From, job.Recipients, job.Body)
		var se *StepError
		if err != nil && errors.As(err, &se) && se.Reply == nil {
			w.conn.Abort()
			w.conn = nil
			if reused && se.Stage == StageMail {
				reused = false
				continue
			}
		}
		return res, err
	}
}

// closeConn ends the worker's connection and gives its slot back.
func (w *Worker) closeConn() {
	w.dropConn()
	w.slot.release(context.Background())
}

// dropConn ends the connection but keeps the slot, for a new connection to
// the same mailbox.
func (w *Worker) dropConn() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
