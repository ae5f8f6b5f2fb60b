package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/limits"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/routehealth"
	"github.com/mailgate/mailgate/internal/smtpreply"
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
}

// PolicyFrom reads the worker timing from the configuration.
func PolicyFrom(d config.Delivery) Policy {
	return Policy{MaxAge: d.MaxAge, BackoffInitial: d.BackoffInitial, BackoffMax: d.BackoffMax,
		Lease: d.VisibilityTimeout, IdleTimeout: d.IdleTimeout, PollInterval: d.PollInterval,
		ProbeInterval: d.ProbeInterval, QuotaWait: time.Hour}
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
	health  *routehealth.Health
	limiter *limits.Limiter
	metrics *metrics.Delivery

	conn *Conn
	// The connection slot (Exchange's 3 per mailbox, across instances)
	// this worker holds, for which limiter mailbox, renewed when.
	slot           *limits.Lease
	slotMailbox    string
	slotDone       func() // stops the slot's keeper
	slotWaitSince  time.Time
	slotWaitLogged bool
	// pauseUntil keeps the worker from claiming while its mailbox's limits
	// say wait.
	pauseUntil time.Time
	lastActive time.Time
	// redisIsDown is set while Redis cannot be reached, so an outage is
	// logged once, not every second.
	redisIsDown bool
	// waits caches, per mailbox and for a second, whether Exchange's quota
	// made it wait: one Redis round trip per mailbox a second, not per message.
	waits map[string]cachedWait
	// held caches the route's hold state for a moment, so a busy worker
	// does not ask Redis before every message.
	held        bool
	heldChecked time.Time
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
	// Health, when set, holds the route on configuration errors and blocks
	// and lets one worker probe it; without it such replies are retried.
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
	return &Worker{route: o.Route, queue: o.Queue, dialer: o.Dialer, policy: o.Policy,
		now: o.Now, jitter: o.Jitter, log: o.Log.With("route", o.Route.Name), hooks: o.Hooks, health: o.Health, limiter: o.Limiter, metrics: o.Metrics}
}

// Run delivers until ctx is cancelled. A message being delivered when ctx
// ends is finished (within the SMTP timeouts) and its outcome recorded; no
// new one is taken.
func (w *Worker) Run(ctx context.Context) {
	defer w.closeConn()
	for ctx.Err() == nil {
		if w.routeHeld(ctx) {
			w.closeConn()
			w.probe(ctx)
			sleep(ctx, min(w.policy.ProbeInterval, time.Second))
			continue
		}
		if wait := w.pauseUntil.Sub(w.now()); wait > 0 {
			sleep(ctx, wait)
			continue
		}
		if w.fixedMailbox() {
			// Take a connection slot before a message, so a worker without
			// one never holds a message it cannot send.
			wait, err := w.ensureSlot(ctx, w.probeMailbox())
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
			if (w.conn != nil || w.slot != nil) && w.now().Sub(w.lastActive) >= w.policy.IdleTimeout {
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
	stop := w.keepLease(ctx, job)
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
	} else {
		log.Debug("handed back: a limit says wait", "due", o.Due)
	}
	if w.hooks.Done != nil {
		w.hooks.Done(job, o)
	}
}

// deliver checks the mailbox's quota wait, its connection slot and its
// limits, in that order (so a message handed back costs no limit budget),
// then attempts the delivery.
func (w *Worker) deliver(ctx context.Context, job *queue.Job) queue.Outcome {
	if until, reason := w.mailboxWait(ctx, job); !until.IsZero() {
		return queue.Outcome{Status: queue.StatusQueued, Due: until, Detail: "waiting: " + reason}
	}
	switch {
	case w.conn != nil && w.conn.Mailbox != w.mailbox(job):
		w.closeConn() // its slot goes with it: never a connection without a slot
	case w.conn != nil && w.now().Sub(w.conn.LastUsed) >= w.policy.IdleTimeout:
		// Exchange may have closed it by now; the slot stays ours, so the
		// message is not handed back after its admission was counted.
		w.dropConn()
	}
	if w.conn == nil {
		if wait, err := w.ensureSlot(ctx, w.mailbox(job)); err != nil || wait > 0 {
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
	started := time.Now()
	res, err := w.attempt(ctx, job)
	o, hold := w.decide(job, res, err)
	if o.Attempted {
		w.metrics.Attempt(w.route.Name, time.Since(started))
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
	deadline := time.Now().Add(max(w.policy.Lease, 5*time.Minute))
	for {
		err := w.queue.Complete(ctx, job, o)
		if err == nil || errors.Is(err, queue.ErrLeaseLost) || time.Now().After(deadline) {
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
func (w *Worker) keepLease(ctx context.Context, job *queue.Job) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.policy.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := w.queue.Extend(ctx, job, w.policy.Lease); errors.Is(err, queue.ErrLeaseLost) {
					w.log.Warn("lease lost while delivering", "id", job.ID)
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// mailbox is the mailbox a job authenticates as.
func (w *Worker) mailbox(job *queue.Job) string {
	if w.route.Auth.Username == config.FromMailbox {
		return job.From
	}
	return w.route.Auth.Username
}

// attempt sends job over the worker's connection, opening one when needed.
// A reused connection that the server closed while idle is reopened once.
func (w *Worker) attempt(ctx context.Context, job *queue.Job) (Result, error) {
	mailbox := w.mailbox(job)
	reused := w.conn != nil
	for {
		if w.conn == nil {
			if wait, err := w.ensureSlot(ctx, mailbox); err != nil || wait > 0 {
				if err != nil {
					wait = time.Second
				}
				return Result{}, errWaitSlot{wait}
			}
			// Another worker may have held the route a moment ago: ask
			// afresh before each new connection, so a held route gets no
			// more failed AUTHs than the one that held it.
			if w.health != nil {
				if held, reason, _, err := w.health.State(ctx, w.route.Name); err == nil && held {
					w.held, w.heldChecked = true, w.now()
					return Result{}, errRouteHeld{reason}
				}
			}
			c, err := w.dialer.Dial(ctx, mailbox, nil)
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
	w.releaseSlot(context.Background())
}

// dropConn ends the connection but keeps the slot, for a new connection to
// the same mailbox.
func (w *Worker) dropConn() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// holdAction is what decide asks of the shared route state.
type holdAction struct {
	route   bool // hold the whole route
	mailbox bool // make the job's mailbox wait until `until`
	until   time.Time
	reason  string
}

// decide turns an attempt's result into the outcome to record, and says
// whether the route or the mailbox must stop.
func (w *Worker) decide(job *queue.Job, res Result, err error) (queue.Outcome, *holdAction) {
	var held errRouteHeld
	if errors.As(err, &held) {
		return w.handBack(held.reason), nil
	}
	var slotWait errWaitSlot
	if errors.As(err, &slotWait) {
		return w.waitOutcome(slotWait.wait, slotWait.Error()), nil
	}
	if err != nil {
		var se *StepError
		if !errors.As(err, &se) {
			se = &StepError{Stage: StageConnect, Err: err}
		}
		if se.Reply == nil {
			if hint := tlsConfigError(se); hint != "" && w.health != nil {
				reason := fmt.Sprintf("%s failed: %v (%s)", se.Stage, se.Err, hint)
				return w.handBack(reason), &holdAction{route: true, reason: reason}
			}
			return w.deferred(job, nil, nil, fmt.Sprintf("%s failed: %v", se.Stage, se.Err)), nil
		}
		resp := response(*se.Reply)
		v := smtpreply.Classify(*se.Reply)
		detail := withHint(se.Stage+": "+se.Reply.String(), v.Hint)
		switch v.Action {
		case smtpreply.Fail:
			return queue.Outcome{Status: queue.StatusFailed, Attempted: true, Response: resp, Detail: detail}, nil
		case smtpreply.HoldRoute:
			if w.health != nil && w.mailboxOnly(se) {
				// One mailbox of a {from} route cannot authenticate (SMTP AUTH
				// is often enabled mailbox by mailbox): only its messages
				// wait, and it is tried again once per probe interval.
				until := w.now().Add(w.policy.ProbeInterval)
				o := queue.Outcome{Status: queue.StatusQueued, Due: until, Response: resp,
					Detail: "mailbox " + w.mailbox(job) + " cannot authenticate, its messages wait: " + detail}
				return o, &holdAction{mailbox: true, until: until, reason: detail}
			}
			if w.health != nil {
				return w.handBack(detail), &holdAction{route: true, reason: detail}
			}
		case smtpreply.WaitMailbox:
			if w.health != nil {
				until := w.now().Add(w.policy.QuotaWait)
				o := queue.Outcome{Status: queue.StatusQueued, Due: until, Response: resp,
					Detail: detail + "; waiting until " + until.UTC().Format(time.RFC3339)}
				return o, &holdAction{mailbox: true, until: until, reason: detail}
			}
		}
		return w.deferred(job, nil, resp, detail), nil
	}

	var temp, perm []RecipientReply
	for _, r := range res.Refused {
		if smtpreply.Classify(r.Reply).Action == smtpreply.Fail {
			perm = append(perm, r)
		} else {
			temp = append(temp, r)
		}
	}
	var parts []string
	if len(res.Accepted) > 0 {
		parts = append(parts, fmt.Sprintf("accepted for %s: %s", strings.Join(res.Accepted, ", "), res.Reply))
	}
	for _, r := range perm {
		parts = append(parts, fmt.Sprintf("refused %s: %s", r.Recipient, r.Reply))
	}
	for _, r := range temp {
		parts = append(parts, fmt.Sprintf("deferred %s: %s", r.Recipient, r.Reply))
	}
	detail := strings.Join(parts, "; ")
	if len(temp) > 0 {
		rest := make([]string, len(temp))
		for i, r := range temp {
			rest[i] = r.Recipient
		}
		resp := response(temp[0].Reply)
		if len(res.Accepted) > 0 {
			resp = response(res.Reply)
		}
		return w.deferred(job, rest, resp, detail), nil
	}
	if len(res.Accepted) == 0 {
		return queue.Outcome{Status: queue.StatusFailed, Attempted: true, Response: response(perm[0].Reply), Detail: detail}, nil
	}
	return queue.Outcome{Status: queue.StatusSent, Attempted: true, Response: response(res.Reply), Detail: detail}, nil
}

// errRouteHeld stops an attempt before it starts: the route is held.
type errRouteHeld struct{ reason string }

func (e errRouteHeld) Error() string { return "route held: " + e.reason }

// mailboxOnly reports whether an AUTH refusal concerns one mailbox of a
// {from} route rather than the whole route: Exchange says "for the Tenant"
// when SMTP AUTH is off tenant-wide, and a block or a bad app credential
// fails every mailbox alike.
func (w *Worker) mailboxOnly(se *StepError) bool {
	if w.fixedMailbox() || se.Stage != StageAuth || se.Reply == nil {
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
		mailbox := w.mailbox(job)
		delete(w.waits, mailbox)
		if err := w.health.HoldMailbox(ctx, w.route.Name, mailbox, h.until, h.reason); err != nil {
			w.log.Error("cannot make the mailbox wait", "mailbox", mailbox, "err", err)
			return
		}
		w.closeConn()
		w.log.Warn("mailbox waits for its quota window", "mailbox", mailbox, "until", h.until)
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
	c, err := w.dialer.Dial(ctx, w.probeMailbox(), nil)
	if err != nil {
		reason := err.Error()
		var se *StepError
		if errors.As(err, &se) && se.Reply != nil {
			reason = withHint(se.Stage+": "+se.Reply.String(), smtpreply.Classify(*se.Reply).Hint)
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

// probeMailbox is the mailbox a probe authenticates as.
func (w *Worker) probeMailbox() string {
	if w.route.Auth.Username == config.FromMailbox {
		if len(w.route.Mailboxes) > 0 {
			return w.route.Mailboxes[0]
		}
		return ""
	}
	return w.route.Auth.Username
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
	mailbox, now := w.mailbox(job), w.now()
	c, ok := w.waits[mailbox]
	if !ok || now.Sub(c.checked) >= time.Second {
		until, reason, err := w.health.MailboxWait(ctx, w.route.Name, mailbox)
		if err != nil {
			return time.Time{}, ""
		}
		if w.waits == nil || len(w.waits) > 1000 {
			w.waits = map[string]cachedWait{}
		}
		c = cachedWait{until: until, checked: now, reason: reason}
		w.waits[mailbox] = c
	}
	if !c.until.After(now) {
		return time.Time{}, ""
	}
	return c.until, c.reason
}

// deferred schedules the next attempt, or fails the message when that
// attempt would come after max_age.
func (w *Worker) deferred(job *queue.Job, rcpts []string, resp *queue.Response, detail string) queue.Outcome {
	now := w.now()
	deadline := job.CreatedAt.Add(w.policy.MaxAge)
	if !now.Before(deadline) {
		return queue.Outcome{Status: queue.StatusFailed, Attempted: true, Response: resp,
			Detail: fmt.Sprintf("not delivered within delivery.max_age (%s) after %d attempts; last: %s",
				w.policy.MaxAge, job.Attempts+1, detail)}
	}
	wait := Backoff(job.Attempts+1, w.policy.BackoffInitial, w.policy.BackoffMax, w.jitter())
	// The last attempt is made at max_age, not skipped because the backoff
	// would overshoot it.
	wait = min(wait, deadline.Sub(now))
	return queue.Outcome{Status: queue.StatusDeferred, Attempted: true, Due: now.Add(wait), Response: resp, Recipients: rcpts,
		Detail: fmt.Sprintf("%s; next attempt in %s", detail, roundWait(wait))}
}

// roundWait shows a wait with the precision that matters for its size.
func roundWait(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(10 * time.Millisecond)
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// Backoff is the wait before attempt n (n >= 1 counts attempts made):
// initial doubling per attempt up to max, of which the upper half is random
// ("equal jitter"), so retries of many messages spread out instead of
// hitting the server together.
func Backoff(n int, initial, max time.Duration, jitter float64) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(jitter*float64(d/2))
}

func response(r smtpreply.Reply) *queue.Response {
	return &queue.Response{Code: r.Code, EnhancedCode: r.Enhanced, Text: r.Text}
}

func withHint(detail, hint string) string {
	if hint == "" {
		return detail
	}
	return detail + " (" + hint + ")"
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
