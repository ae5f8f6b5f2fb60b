// Package intake is the one accept step of every door: the HTTP API today,
// the SMTP door, the sendmail shim and webhooks. A door parses its input,
// renders it with compose, and hands the result to Intake.Accept, which
// checks it against the app's compiled policy (package apppolicy), stores it
// with queue.EnqueueRetrying, and counts and logs the outcome. Doors only
// translate the typed errors into their protocol; no door checks a policy
// of its own, so they cannot drift apart.
//
// Usage, from any door:
//
//	in := intake.New(intake.Options{Queue: q, Metrics: m, Log: log})
//	pol := policies[appID] // from config.Config.Policies(), compiled once
//	now := time.Now()
//	id := queue.NewID(now)
//	msg, err := compose.ParseRaw(raw, compose.Options{Now: now, MessageIDLocal: id,
//		DefaultFrom: pol.DefaultFrom()})
//	if err != nil { /* *compose.Error: the input is malformed or invalid */ }
//	res, err := in.Accept(ctx, pol, intake.Submission{ID: id, Message: msg,
//		EnvelopeFrom: mailFrom /* "" outside SMTP */, IdempotencyKey: key})
//	var refused *apppolicy.Refusal
//	var unavailable *intake.QueueError
//	var full *intake.FullError
//	switch {
//	case errors.As(err, &refused):     // 403/413/422; SMTP 550 5.7.1, 552 5.3.4
//	case errors.Is(err, intake.ErrIdempotencyKey): // the key is not acceptable
//	case errors.As(err, &full):        // 503 queue_full or 429 app_queue_full with Retry-After; SMTP 452 4.3.1
//	case errors.As(err, &unavailable): // 503; SMTP 451 4.3.0: try again later
//	case err == nil:                   // stored as res.ID (res.Created false: a replay)
//	}
//
// The checks run in a fixed order, cheapest first: every sender address,
// the recipient count, the recipients, the size, the idempotency key.
package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/metrics"
	"github.com/mailgate/mailgate/internal/queue"
)

// MaxIdempotencyKey is the longest Idempotency-Key accepted (README.md).
const MaxIdempotencyKey = 255

// DefaultRetryFor bounds how long Accept keeps trying to store a message
// while Redis is unreachable, before it gives up with a *QueueError.
const DefaultRetryFor = 10 * time.Second

// ErrIdempotencyKey is returned for a key longer than MaxIdempotencyKey or
// not on one line.
var ErrIdempotencyKey = errors.New("idempotency key must be at most 255 characters on one line")

// Enqueuer stores a message; *queue.Queue is one.
type Enqueuer interface {
	EnqueueRetrying(ctx context.Context, m queue.Message, within time.Duration) (id string, created bool, err error)
}

// Options configure an Intake.
type Options struct {
	Queue   Enqueuer
	Metrics *metrics.API // nil: not counted
	Log     *slog.Logger // nil: not logged
	// RetryFor is how long to retry storing while Redis is down; zero
	// means DefaultRetryFor.
	RetryFor time.Duration
}

// Intake accepts rendered messages. It is safe for concurrent use.
type Intake struct {
	queue    Enqueuer
	metrics  *metrics.API
	log      *slog.Logger
	retryFor time.Duration
}

// New returns an Intake.
func New(o Options) *Intake {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RetryFor <= 0 {
		o.RetryFor = DefaultRetryFor
	}
	return &Intake{queue: o.Queue, metrics: o.Metrics, log: o.Log, retryFor: o.RetryFor}
}

// RetryFor is how long Accept retries storing before a *QueueError.
func (in *Intake) RetryFor() time.Duration { return in.retryFor }

// Submission is one rendered message and what the door knows about it.
type Submission struct {
	// ID is the queue id, the one given to compose as MessageIDLocal
	// (queue.NewID). Required.
	ID      string
	Message *compose.Message
	// EnvelopeFrom is the SMTP door's MAIL FROM, a bare address; it must
	// be within the From policy too, and becomes the envelope sender. ""
	// means the header From.
	EnvelopeFrom   string
	IdempotencyKey string            // "" for none
	Metadata       map[string]string // stored with the message, shown in its status
	// KeyTTL, when positive, is how long IdempotencyKey is kept instead of
	// queue.IdempotencyTTL (a key the door derived itself, see
	// queue.Message.KeyTTL).
	KeyTTL time.Duration
	// SendAt, when in the future, schedules the message (send_at).
	SendAt time.Time
}

// Result is a stored message.
type Result struct {
	ID      string // the stored id: the first one's for an idempotent replay
	Created bool   // false when IdempotencyKey named an earlier message
}

// QueueError is a message that could not be stored because Redis failed and
// did not recover within RetryFor: nothing was stored unless MaybeStored
// says an attempt reached Redis first, and a retry with the same
// idempotency key is safe either way. When Err is a
// *queue.NotReplicatedError (redis.min_replicas_acked), it was stored but
// too few replicas confirmed it: doors must not acknowledge it either, and
// the same retry settles it.
type QueueError struct {
	ID  string // the id it would have had
	Err error
	// MaybeStored is set when an attempt reached Redis before it went away
	// (a *queue.UnknownOutcomeError): the message may be stored after all,
	// and is then delivered. Otherwise nothing was stored.
	MaybeStored bool
}

func (e *QueueError) Error() string { return fmt.Sprintf("queue message %s: %v", e.ID, e.Err) }
func (e *QueueError) Unwrap() error { return e.Err }

// QueueFullRetryAfter is the Retry-After of a refusal for a full queue: a
// queue drains at its route's sending rate, so a minute frees room for a
// few dozen messages of an smtp-auth mailbox.
const QueueFullRetryAfter = time.Minute

// FullError is a message refused because its route's queue (App false) or
// the app's share of it (App true) holds as much as its limit allows
// (route.queue and app.queue in the configuration). Nothing was stored; the
// same message may be submitted again after RetryAfter.
type FullError struct {
	ID         string // the id it would have had
	App        bool
	RetryAfter time.Duration
	Err        error // queue.ErrRouteFull or queue.ErrAppFull
}

func (e *FullError) Error() string { return fmt.Sprintf("queue message %s: %v", e.ID, e.Err) }
func (e *FullError) Unwrap() error { return e.Err }

// Check runs the policy checks of Accept without storing anything: every
// sender address of the message and the envelope sender, the recipient
// count, the recipients and the size. The result is nil or a refusal.
func Check(pol *apppolicy.Policy, msg *compose.Message, envelopeFrom string) *apppolicy.Refusal {
	for _, s := range msg.Senders {
		if r := pol.CheckFrom(s.Field, s.Address); r != nil {
			return r
		}
	}
	if envelopeFrom != "" {
		if r := pol.CheckFrom("envelope_from", envelopeFrom); r != nil {
			return r
		}
	}
	if r := pol.CheckRecipientCount(len(msg.Recipients)); r != nil {
		return r
	}
	if r := pol.CheckRecipients(msg.Recipients); r != nil {
		return r
	}
	return pol.CheckSize(int64(len(msg.Bytes)))
}

// Accept checks s against pol and stores it, within pol's queue limits. The
// error is a *apppolicy.Refusal, ErrIdempotencyKey, a *FullError or a
// *QueueError.
func (in *Intake) Accept(ctx context.Context, pol *apppolicy.Policy, s Submission) (Result, error) {
	qm, err := checked(pol, s)
	if err != nil {
		return Result{}, err
	}
	stored, created, err := in.queue.EnqueueRetrying(ctx, qm, in.retryFor)
	return in.outcome(pol, s, stored, created, err)
}

// checked runs every check of Accept on s and returns what to store.
func checked(pol *apppolicy.Policy, s Submission) (queue.Message, error) {
	msg := s.Message
	if r := Check(pol, msg, s.EnvelopeFrom); r != nil {
		return queue.Message{}, r
	}
	if len(s.IdempotencyKey) > MaxIdempotencyKey || strings.ContainsAny(s.IdempotencyKey, "\r\n") {
		return queue.Message{}, ErrIdempotencyKey
	}
	from := msg.From.Address
	if s.EnvelopeFrom != "" {
		from = s.EnvelopeFrom
	}
	return queue.Message{
		ID: s.ID, App: pol.App(), Route: pol.Route(),
		From: from, HeaderFrom: msg.From.String(),
		Recipients: msg.Recipients, To: msg.To, Cc: msg.Cc,
		Subject: msg.Subject, MessageID: msg.MessageID, Body: msg.Bytes,
		Metadata: s.Metadata, IdempotencyKey: s.IdempotencyKey, KeyTTL: s.KeyTTL, SendAt: s.SendAt,
		Limits: queue.Limits(pol.QueueLimits()),
	}, nil
}

// outcome counts and logs what storing s gave, and returns Accept's answer.
func (in *Intake) outcome(pol *apppolicy.Policy, s Submission, stored string, created bool, err error) (Result, error) {
	if err != nil {
		return Result{}, in.failure(pol, s, err)
	}
	if created {
		in.count(pol.App(), "accepted", len(s.Message.Bytes))
		// Typed attributes: one line per message, without boxing each value.
		in.log.LogAttrs(context.Background(), slog.LevelInfo, "message queued", slog.String("app", pol.App()),
			slog.String("id", stored), slog.String("route", pol.Route()),
			slog.Int("recipients", len(s.Message.Recipients)), slog.Int("bytes", len(s.Message.Bytes)))
	} else {
		in.count(pol.App(), "idempotent_replay", 0)
	}
	return Result{ID: stored, Created: created}, nil
}

// failure counts and logs a message that was not stored and returns the
// error for it. It is apart from outcome so that the targets of errors.As,
// which escape, are only allocated for an error.
func (in *Intake) failure(pol *apppolicy.Policy, s Submission, err error) error {
	if full := errors.Is(err, queue.ErrRouteFull); full || errors.Is(err, queue.ErrAppFull) {
		result := "app_queue_full"
		if full {
			result = "queue_full"
		}
		in.log.Warn("queue full: message refused", "app", pol.App(), "route", pol.Route(), "id", s.ID, "limit", result)
		in.count(pol.App(), result, 0)
		return &FullError{ID: s.ID, App: !full, RetryAfter: QueueFullRetryAfter, Err: err}
	}
	var notReplicated *queue.NotReplicatedError
	if errors.As(err, &notReplicated) {
		in.log.Warn("message stored but not confirmed by enough Redis replicas; the client is told to retry",
			"app", pol.App(), "id", s.ID, "route", pol.Route(), "replicas", notReplicated.Got, "want", notReplicated.Want)
		in.count(pol.App(), "not_replicated", 0)
		return &QueueError{ID: s.ID, Err: err}
	}
	var unknown *queue.UnknownOutcomeError
	maybe := errors.As(err, &unknown)
	in.log.Error("could not queue a message", "app", pol.App(), "id", s.ID, "maybe_stored", maybe, "err", err)
	in.count(pol.App(), "queue_unavailable", 0)
	return &QueueError{ID: s.ID, Err: err, MaybeStored: maybe}
}

// BatchEnqueuer stores many messages in one round trip; *queue.Queue is one.
type BatchEnqueuer interface {
	EnqueueManyRetrying(ctx context.Context, ms []queue.Message, within time.Duration) []queue.EnqueueResult
}

// Outcome is what became of one submission of AcceptMany: Err is nil
// (stored as Result) or what Accept would have returned.
type Outcome struct {
	Result Result
	Err    error
}

// AcceptMany is Accept for each of subs, with every message that passes
// its checks stored in one round trip to Redis (the Options' Queue must
// be a BatchEnqueuer). Each one is checked and stored on its own: one
// refused or not stored never keeps another out. The outcomes are in the
// order of subs. A failure of Redis is reported per message, as a
// *QueueError on each one not confirmed stored, with MaybeStored when its
// script reached Redis as it went away and its outcome is unknown, as
// Accept reports it; usually the whole batch shares one fate.
func (in *Intake) AcceptMany(ctx context.Context, pol *apppolicy.Policy, subs []Submission) []Outcome {
	out := make([]Outcome, len(subs))
	var ms []queue.Message
	var idx []int // position in subs of each of ms
	for i, s := range subs {
		qm, err := checked(pol, s)
		if err != nil {
			out[i].Err = err
			continue
		}
		ms = append(ms, qm)
		idx = append(idx, i)
	}
	if len(ms) == 0 {
		return out
	}
	be, ok := in.queue.(BatchEnqueuer)
	if !ok {
		for j, i := range idx {
			stored, created, err := in.queue.EnqueueRetrying(ctx, ms[j], in.retryFor)
			out[i].Result, out[i].Err = in.outcome(pol, subs[i], stored, created, err)
		}
		return out
	}
	for j, r := range be.EnqueueManyRetrying(ctx, ms, in.retryFor) {
		i := idx[j]
		out[i].Result, out[i].Err = in.outcome(pol, subs[i], r.ID, r.Created, r.Err)
	}
	return out
}

func (in *Intake) count(app, result string, size int) {
	if in.metrics != nil {
		in.metrics.Submission(app, result, size)
	}
}
