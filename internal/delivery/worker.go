package delivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
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
	// lastSweep is when this worker last tried the max_age sweep.
	lastSweep time.Time
	// pre is the admission of the batch's next message, already asked.
	pre *preAdmission
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
//
// An idle worker does not poll: it waits until the first lane of the route
// may send, or until this process queues a message for the route, and at
// most maxIdleWait (a message queued by another instance is found then).
func (w *Worker) Run(ctx context.Context) {
	defer w.closeConn()
	idle := w.policy.PollInterval
	for ctx.Err() == nil {
		if w.holds.routeHeld(ctx) {
			w.closeConn()
			w.probe(ctx)
			w.expireWaiting(ctx)
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
		w.expireWaiting(ctx) // at most once a minute or so, busy or idle
		jobs, next, err := w.queue.ClaimBatch(ctx, w.route.Name, w.policy.Lease, w.claimOptions())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.redisDown("taking messages", err)
			sleep(ctx, time.Second)
			continue
		}
		w.redisUp()
		if len(jobs) == 0 {
			if (w.conn != nil || w.slot.held()) && w.now().Sub(w.lastActive) >= w.policy.IdleTimeout {
				w.closeConn()
			}
			wait := idle
			if !next.IsZero() {
				wait = min(wait, max(next.Sub(w.now()), time.Millisecond))
			}
			w.queue.Wait(ctx, w.route.Name, wait)
			// Each idle round waits longer, up to maxIdleWait: an idle
			// worker costs Redis about one claim a second.
			idle = min(2*idle, max(w.policy.PollInterval, maxIdleWait))
			continue
		}
		idle = w.policy.PollInterval
		// The delivery and its record run to the end even when ctx is
		// cancelled: a graceful stop must not abandon a message mid-DATA.
		w.processBatch(ctx, jobs)
	}
}

// maxIdleWait is the longest an idle worker waits before it looks at the
// queue again, and so the longest a message queued by another instance
// waits for an idle worker.
const maxIdleWait = time.Second

// claimBatch is how many messages a worker takes at once when its route's
// per-minute limit would admit them promptly: they go out over one
// connection, and one round trip to Redis claims them all.
const claimBatch = 8

// promptly is how soon a batch must fit into the per-minute limit to be
// claimed at once; a slower limit (Exchange's 30 a minute) gets one message
// per claim, since the next would only have to wait.
const promptly = 250 * time.Millisecond

func (w *Worker) claimOptions() queue.ClaimOptions {
	l := w.route.Limits
	if w.limiter == nil || l.MessagesPerMinute <= 0 {
		return queue.ClaimOptions{Max: claimBatch}
	}
	spacing := limits.Spacing(l.MessagesPerMinute)
	if spacing*claimBatch <= promptly {
		return queue.ClaimOptions{Max: claimBatch}
	}
	o := queue.ClaimOptions{Max: 1}
	if !mailbox.Fixed(w.route) {
		// Each lane is one mailbox: its next message cannot be admitted
		// before the limit's spacing anyway.
		o.Pace = spacing
	}
	return o
}

// processBatch delivers claimed jobs in order. When one of them makes its
// mailbox wait, the rest (all of the same lane) wait with it untouched; on
// shutdown the ones not started are handed back.
func (w *Worker) processBatch(ctx context.Context, jobs []*queue.Job) {
	leases := w.keepLeases(jobs)
	defer leases.stop()
	defer func() { w.pre = nil }()
	var wait *queue.Outcome
	for i, job := range jobs {
		leases.done(i)
		var next *queue.Job
		if i+1 < len(jobs) {
			next = jobs[i+1]
		}
		switch {
		case wait != nil:
			o := *wait
			o.Detail = ""
			w.finish(context.WithoutCancel(ctx), job, o)
		case ctx.Err() != nil:
			w.finish(context.WithoutCancel(ctx), job, queue.Outcome{Status: queue.StatusQueued, Due: w.now()})
		default:
			o := w.process(context.WithoutCancel(ctx), job, next)
			if o.LaneWaits {
				wait = &o
			}
		}
	}
}

// process delivers job and records the outcome. When next is the message
// the worker sends after it, over the same connection, the outcome goes to
// Redis in one round trip with next's admission (recordWithNext).
func (w *Worker) process(ctx context.Context, job, next *queue.Job) queue.Outcome {
	o := w.deliver(ctx, job)
	w.lastActive = w.now()
	o = w.expireIfWaiting(job, o)
	if next != nil && w.limiter != nil && o.Status == queue.StatusSent && w.conn != nil {
		w.recordWithNext(ctx, job, o, next)
	} else {
		w.finish(ctx, job, o)
	}
	return o
}

// preAdmission is the admission of the next message of a batch, taken in
// the round trip that recorded the previous one's outcome.
type preAdmission struct {
	id   string
	wait time.Duration
	err  error
}

// recordWithNext records job's outcome and asks next's admission in one
// pipeline. Should the admission be wasted (next is handed back for another
// reason before its attempt) the limit counted one message too many: the
// safe side.
func (w *Worker) recordWithNext(ctx context.Context, job *queue.Job, o queue.Outcome, next *queue.Job) {
	pipe := w.queue.Pipeline()
	rec := w.queue.CompleteIn(ctx, pipe, job, o)
	adm := w.limiter.AdmitMessageIn(ctx, pipe, w.route.Name, mailbox.Limits(w.route, mailbox.Of(w.route, next.From)),
		len(next.Recipients), w.routeLimits())
	_, _ = pipe.Exec(ctx) // each reply is read below
	err := rec()
	if err != nil && !errors.Is(err, queue.ErrLeaseLost) {
		// Not recorded (NOSCRIPT after a Redis restart, a dropped
		// connection): the retrying path has the last word.
		err = w.record(ctx, job, o)
	} else if err == nil {
		w.redisUp()
	}
	if wait, aerr := adm(); aerr == nil {
		w.pre = &preAdmission{id: next.ID, wait: wait}
	}
	w.report(job, o, err)
}

// finish records o for job and reports it.
func (w *Worker) finish(ctx context.Context, job *queue.Job, o queue.Outcome) {
	w.report(job, o, w.record(ctx, job, o))
}

// report logs and counts an outcome, and calls the Done hook once it was
// recorded (err nil).
func (w *Worker) report(job *queue.Job, o queue.Outcome, err error) {
	log := w.log.With("id", job.ID, "app", job.App, "attempt", job.Attempts+1)
	if err != nil {
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
		return queue.Outcome{Status: queue.StatusQueued, Due: until, Detail: "waiting: " + reason, LaneWaits: true}
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

// batchLeases extends the leases of a claimed batch while its jobs wait
// for their turn or are delivered, so only a dead worker's messages are
// taken over.
type batchLeases struct {
	stop  func()
	first atomic.Int64 // index of the first job not recorded yet
}

// done says the jobs before i are recorded: their leases are not extended
// any more (job i is being delivered, and its lease still is).
func (b *batchLeases) done(i int) { b.first.Store(int64(i)) }

func (w *Worker) keepLeases(jobs []*queue.Job) *batchLeases {
	b := &batchLeases{}
	lost := make([]bool, len(jobs))
	b.stop = renewEvery(w.policy.Lease/3, func(ctx context.Context) bool {
		for i := int(b.first.Load()); i < len(jobs); i++ {
			if !lost[i] && errors.Is(w.queue.Extend(ctx, jobs[i], w.policy.Lease), queue.ErrLeaseLost) {
				lost[i] = true
				w.log.Warn("lease lost while delivering", "id", jobs[i].ID)
			}
		}
		return false
	})
	return b
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
