package queue

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/keys"
)

// Status values of a message, as the API shows them.
const (
	StatusQueued   = "queued"
	StatusSending  = "sending"
	StatusDeferred = "deferred"
	StatusSent     = "sent"
	StatusFailed   = "failed"
	// StatusScheduled is a message whose send_at is still ahead; it waits
	// in the ready set, due at send_at, and can be cancelled until a
	// worker takes it (schedule.go).
	StatusScheduled = "scheduled"
	// StatusCancelled is a scheduled message cancelled before it was due.
	StatusCancelled = "cancelled"
)

// IdempotencyTTL is how long an Idempotency-Key is remembered per app.
const IdempotencyTTL = 24 * time.Hour

// ErrNotFound means no message with that id exists (or it expired).
var ErrNotFound = errors.New("message not found")

// ErrLeaseLost means the worker's lease ran out and the message was handed
// to another worker; the caller's outcome was not recorded.
var ErrLeaseLost = errors.New("lease lost: the message was taken over by another worker")

// ErrRouteFull means the route's queue holds as many messages or bytes as
// its limit allows (Limits); nothing was stored.
var ErrRouteFull = errors.New("the route's queue is full")

// ErrAppFull means the app's share of the route's queue is used up
// (Limits); nothing was stored.
var ErrAppFull = errors.New("the app's share of the route's queue is full")

// Limits bound what may wait (queued, deferred or being delivered) on a
// route; zero means no bound. doc.go ("Limits") says how they are kept.
type Limits struct {
	// RouteMessages and RouteBytes bound the route, all apps together.
	RouteMessages, RouteBytes int64
	// AppMessages and AppBytes bound the submitting app's share of it.
	AppMessages, AppBytes int64
}

// Full tells whether a queue holding messages and bytes refuses the next
// message under a limit of maxMessages and maxBytes (zero: none), as the
// enqueue script decides: an empty queue takes any message, so a bytes limit
// is reached only by the bytes already there.
func Full(messages, bytes, maxMessages, maxBytes int64) bool {
	return messages > 0 && ((maxMessages > 0 && messages >= maxMessages) || (maxBytes > 0 && bytes >= maxBytes))
}

// Options configure a Queue.
type Options struct {
	// Prefix namespaces every key ("mailgate" by default).
	Prefix string
	// Retention is how long finished messages stay readable.
	Retention time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MinReplicas, when above zero, makes Enqueue succeed only once that
	// many replicas hold the message (Redis WAIT); otherwise it returns a
	// *NotReplicatedError.
	MinReplicas int
	// ReplicaTimeout bounds that wait (one second when zero).
	ReplicaTimeout time.Duration
	// NoGrouping sends every Enqueue on its own instead of grouping
	// concurrent ones of a route into one pipeline (group.go): for
	// measuring what the grouping saves.
	NoGrouping bool
}

// Queue is the Redis-backed message store and work queue.
type Queue struct {
	rdb       redis.UniversalClient
	keys      keys.Space
	retention time.Duration
	now       func() time.Time

	minReplicas    int
	replicaTimeout time.Duration

	// group sends concurrent enqueues together; nil when
	// Options.NoGrouping.
	group *grouper

	// wakeMu guards wake: per route, a channel closed when this process
	// queued something that may be due now (see Wait).
	wakeMu sync.Mutex
	wake   map[string]chan struct{}
}

// New returns a Queue on rdb.
func New(rdb redis.UniversalClient, opts Options) *Queue {
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReplicaTimeout <= 0 {
		opts.ReplicaTimeout = time.Second
	}
	q := &Queue{rdb: rdb, keys: keys.New(opts.Prefix), retention: opts.Retention, now: opts.Now,
		wake: map[string]chan struct{}{}, minReplicas: opts.MinReplicas, replicaTimeout: opts.ReplicaTimeout}
	if !opts.NoGrouping {
		q.group = &grouper{q: q, routes: map[string]*routeQueue{}}
	}
	return q
}

// Wait blocks until d has passed, ctx ends, or this Queue queued a message
// of route that may be due now (an enqueue, a requeue, a hand-back due at
// once). Idle workers wait here instead of polling Redis: a message queued
// by another instance is found when d ends, so d bounds that latency.
func (q *Queue) Wait(ctx context.Context, route string, d time.Duration) {
	if d <= 0 {
		return
	}
	q.wakeMu.Lock()
	ch, ok := q.wake[route]
	if !ok {
		ch = make(chan struct{})
		q.wake[route] = ch
	}
	q.wakeMu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-ch:
	}
}

// notify wakes the workers of route waiting in Wait.
func (q *Queue) notify(route string) {
	q.wakeMu.Lock()
	if ch, ok := q.wake[route]; ok {
		close(ch)
		delete(q.wake, route)
	}
	q.wakeMu.Unlock()
}

// laneOf is the lane of a message sent by from: the sender lower-cased
// (ASCII, as Lua's string.lower does for messages stored before lanes), or
// "-" for the null sender.
func laneOf(from string) string {
	if from == "" {
		return "-"
	}
	b := []byte(from)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Message is what the API stores for a route: the final bytes and their
// envelope, checked once at the door.
type Message struct {
	ID         string
	App        string
	Route      string
	From       string   // envelope sender (MAIL FROM), a bare address
	HeaderFrom string   // the From header as shown to users
	Recipients []string // envelope recipients (RCPT TO)
	To, Cc     []string // header recipients, for the status API
	Subject    string
	MessageID  string // the Message-ID header, without brackets
	Body       []byte // the final RFC 5322 message, CRLF line endings
	Metadata   map[string]string
	// IdempotencyKey, when set, makes a second Enqueue with the same key from
	// the same app within IdempotencyTTL return the first id.
	IdempotencyKey string
	// SendAt, when after now, schedules the message: it is stored as
	// scheduled and due at SendAt.
	SendAt time.Time
	// KeyTTL, when positive, replaces IdempotencyTTL for this key: a key
	// mailgate derives itself (a webhook body's hash) must not outlive the
	// sender's retries, or its next reminder would be taken for one.
	KeyTTL time.Duration
	// Limits are checked atomically with the enqueue.
	Limits Limits
}

// Response is an SMTP reply as recorded on a message.
type Response struct {
	Code         int    `json:"code"`
	EnhancedCode string `json:"enhanced_code,omitempty"`
	Text         string `json:"text"`
}

// Event is one step in a message's life.
type Event struct {
	At     time.Time `json:"at"`
	Status string    `json:"status"`
	Detail string    `json:"detail,omitempty"`
}

// Status is a message as the API shows it.
type Status struct {
	ID           string            `json:"id"`
	Status       string            `json:"status"`
	App          string            `json:"-"`
	From         string            `json:"from"`
	To           []string          `json:"to"`
	Cc           []string          `json:"cc,omitempty"`
	Subject      string            `json:"subject"`
	Route        string            `json:"route"`
	Attempts     int               `json:"attempts"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	NextAttempt  *time.Time        `json:"next_attempt_at,omitempty"`
	SendAt       *time.Time        `json:"send_at,omitempty"`
	LastResponse *Response         `json:"last_response,omitempty"`
	MessageID    string            `json:"message_id,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Events       []Event           `json:"events"`
}

// Job is a claimed message, owned by one worker until its lease ends.
type Job struct {
	ID         string
	Route      string
	App        string
	From       string
	Recipients []string
	Body       []byte
	Attempts   int // attempts finished before this one
	CreatedAt  time.Time
	Lease      string
	// Lane is the message's lane (its sender, lower-cased): a wait of the
	// mailbox is recorded on it (Outcome.LaneWaits).
	Lane string
	// Due is when the message was due as it was claimed (ms): a message that
	// waits with its lane keeps this place.
	Due int64
}

// NewID returns a new message id: 48 bits of milliseconds then 80 random
// bits, base32 (lower case, 26 characters), so ids sort by creation time and
// cannot be guessed.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never happens on supported platforms
	}
	return idEncoding.EncodeToString(b[:])
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// ValidID reports whether s has the shape of an id, so arbitrary user input
// never becomes part of a Redis key.
func ValidID(s string) bool {
	if len(s) != 26 {
		return false
	}
	_, err := idEncoding.DecodeString(s)
	return err == nil
}

// route returns the keys of route.
func (q *Queue) route(route string) keys.Route { return q.keys.Route(route) }

// Enqueue stores m and queues it for its route in one atomic step. It
// returns the message's id; created is false when the Idempotency-Key was
// already used, and the id is then the first message's. Enqueue is
// idempotent by id: called again with the same m.ID it changes nothing and
// reports created, so a call whose reply was lost can safely be repeated.
// Over m.Limits it stores nothing and returns ErrRouteFull or ErrAppFull.
//
// Concurrent calls for one route are sent to Redis together (group.go).
func (q *Queue) Enqueue(ctx context.Context, m Message) (id string, created bool, err error) {
	if m.ID == "" {
		m.ID = NewID(q.now())
	}
	p := q.pending(ctx, m)
	if q.group == nil {
		q.send(ctx, m.Route, []*pending{p})
	} else {
		q.group.enqueue(m.Route, p)
	}
	return enqueueReply(m.ID, p.res, p.err)
}

// pending is the enqueue script call for m, whose ID is set.
func (q *Queue) pending(ctx context.Context, m Message) *pending {
	ks, args := q.enqueueCall(m)
	return &pending{ctx: ctx, id: m.ID, keys: ks, args: args}
}

// storedNow reports whether enqueueScript's reply says it stored the
// message in this very call (not a replay, not a full queue).
func storedNow(res []any, err error) bool {
	return err == nil && len(res) == 2 && res[0] == int64(1)
}

// enqueueCall is the keys and arguments of enqueueScript for m, whose ID
// is set.
func (q *Queue) enqueueCall(m Message) (ks []string, args []any) {
	now := q.now()
	ms := now.UnixMilli()
	status, due := StatusQueued, ms
	ev := Event{At: now, Status: StatusQueued}
	if m.SendAt.After(now) {
		status, due = StatusScheduled, m.SendAt.UnixMilli()
		ev = Event{At: now, Status: StatusScheduled, Detail: "due at " + m.SendAt.UTC().Format(time.RFC3339)}
	}
	event, _ := json.Marshal(ev)
	fields := []any{
		fieldApp, m.App,
		fieldRoute, m.Route,
		fieldFrom, m.From,
		fieldHeaderFrom, m.HeaderFrom,
		fieldRcpt, mustJSON(m.Recipients),
		fieldTo, mustJSON(m.To),
		fieldCc, mustJSON(m.Cc),
		fieldSubject, m.Subject,
		fieldMessageID, m.MessageID,
		fieldMetadata, mustJSON(m.Metadata),
		fieldStatus, status,
		fieldAttempts, 0,
		fieldCreatedAt, ms,
		fieldUpdatedAt, ms,
		fieldLease, "",
		fieldBody, m.Body,
	}
	if status == StatusScheduled {
		fields = append(fields, fieldSendAt, due, fieldDueAt, due)
	}
	rk := q.route(m.Route)
	useIdem := "0"
	idemKey := rk.NoIdempotency()
	if m.IdempotencyKey != "" {
		useIdem = "1"
		idemKey = rk.Idempotency(m.App, m.IdempotencyKey)
	}
	ttl := IdempotencyTTL
	if m.KeyTTL > 0 {
		ttl = m.KeyTTL
	}
	// The ready set, and the lane, are ordered by due time: a scheduled
	// message is simply due later, and waits like any other (it counts
	// against the limits).
	l := m.Limits
	lane := laneOf(m.From)
	args = append([]any{m.ID, due, useIdem, ttl.Milliseconds(), event, m.App, len(m.Body),
		l.RouteMessages, l.RouteBytes, l.AppMessages, l.AppBytes, lane}, fields...)
	ks = []string{rk.Msg(m.ID), rk.Events(m.ID), rk.Ready(), idemKey, rk.Inflight(), rk.Waiting(),
		rk.Lane(lane), rk.Lanes(), rk.LaneWait()}
	return ks, args
}

// enqueueReply reads enqueueScript's reply for message id.
func enqueueReply(id string, res []any, err error) (string, bool, error) {
	if err != nil {
		return "", false, fmt.Errorf("enqueue %s: %w", id, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("enqueue %s: unexpected reply %v", id, res)
	}
	switch res[0] {
	case int64(-1):
		return "", false, ErrRouteFull
	case int64(-2):
		return "", false, ErrAppFull
	}
	got, _ := res[1].(string)
	return got, res[0] != int64(0), nil
}

// EnqueueRetrying is Enqueue retried, with the same id, while Redis fails,
// for up to within. A failure may come after Redis stored the message but
// before its reply arrived (a restart, a dropped connection); answering
// "not stored" then would make the client send it again under another
// Message-ID. Since Enqueue is idempotent by id, the retries are safe, and
// when they run out a plain read has the last word.
func (q *Queue) EnqueueRetrying(ctx context.Context, m Message, within time.Duration) (id string, created bool, err error) {
	if m.ID == "" {
		m.ID = NewID(q.now())
	}
	pause := newRetryPause(within)
	var notReplicated *NotReplicatedError
	maybeRan := false // an attempt may have reached Redis and run
	for {
		id, created, err = q.Enqueue(ctx, m)
		if err != nil && !neverSent(err) {
			maybeRan = true
		}
		if errors.Is(err, ErrRouteFull) || errors.Is(err, ErrAppFull) {
			return "", false, err // an answer, not a failure: nothing was stored
		}
		if err == nil || pause.over(ctx) {
			break
		}
		if errors.As(err, &notReplicated) {
			// WAIT has already waited its timeout; the caller decides.
			return "", false, err
		}
		pause.wait(ctx)
	}
	if err != nil {
		ok, xerr := q.Exists(context.WithoutCancel(ctx), m.Route, m.ID)
		if xerr == nil && ok {
			if q.minReplicas > 0 {
				if rerr := q.confirmReplicated(context.WithoutCancel(ctx), m.Route, m.ID); rerr != nil {
					return "", false, fmt.Errorf("enqueue %s: %w", m.ID, rerr)
				}
			}
			return m.ID, true, nil
		}
		if xerr != nil && maybeRan {
			// Redis did not answer the read either: a script that ran
			// may be stored, and then it is delivered.
			return "", false, &UnknownOutcomeError{ID: m.ID, Err: err}
		}
		// Redis answered that the message is not there (or no attempt
		// reached it): not stored.
	}
	return id, created, err
}

// retryPause paces the attempts of EnqueueRetrying and EnqueueManyRetrying:
// 50 ms between the first two, doubling up to a second, while the next
// attempt would still start within the window.
type retryPause struct {
	deadline time.Time
	next     time.Duration
}

func newRetryPause(within time.Duration) *retryPause {
	return &retryPause{deadline: time.Now().Add(within), next: 50 * time.Millisecond}
}

// over reports whether no attempt is left: ctx ended, or the next pause
// would end past the window.
func (r *retryPause) over(ctx context.Context) bool {
	return ctx.Err() != nil || time.Now().Add(r.next).After(r.deadline)
}

// wait sleeps the next pause, or until ctx ends.
func (r *retryPause) wait(ctx context.Context) {
	t := time.NewTimer(r.next)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
	r.next = min(2*r.next, time.Second)
}

// UnknownOutcomeError is an enqueue whose outcome could not be learnt: an
// attempt reached Redis (its reply was lost as Redis went away) and Redis
// did not come back within the retry window to say whether the message is
// stored. It may be: when Redis returns with its AOF, the message is
// delivered. The caller can only say so, and ask for a retry with the same
// Idempotency-Key. Every other failure of EnqueueRetrying means that no
// attempt reached Redis, so nothing was stored.
type UnknownOutcomeError struct {
	ID  string
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("enqueue %s: outcome unknown (the message may be stored): %v", e.ID, e.Err)
}
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// neverSent reports whether err shows that a command never ran: it never
// reached Redis (no connection could be made: dial refused or timed out,
// or no connection of the pool became free; or the caller gave up before
// its turn to be sent), or Redis refused it before running it (notRun).
// Any other error (EOF, a reset, a read timeout) may come after Redis ran
// the command. Enqueue sends a script at most once (group.go), so the
// error is that of the one attempt.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) || errors.Is(err, errWithdrawn) || notRun(err)
}

// notRunReplies begin the error replies with which Redis refuses a command
// before running it: the slot is served elsewhere (MOVED, ASK), the
// cluster or the slot is not served now (CLUSTERDOWN, TRYAGAIN), the node
// is still loading its data (LOADING), the script is not loaded
// (NOSCRIPT). go-redis follows MOVED and ASK itself, so one reaches the
// caller only once its redirections ran out. A script's own error reply
// (OOM, a Lua error) is not among them: it may come after some of its
// writes.
var notRunReplies = []string{"MOVED ", "ASK ", "CLUSTERDOWN ", "TRYAGAIN ", "LOADING ", "NOSCRIPT "}

// notRun reports whether err is a Redis reply refusing the command before
// it ran.
func notRun(err error) bool {
	for _, p := range notRunReplies {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// Claim takes the next due message of route for lease, or returns nil
// when nothing is due. Expired leases are first handed back to ready.
func (q *Queue) Claim(ctx context.Context, route string, lease time.Duration) (*Job, error) {
	jobs, _, err := q.ClaimBatch(ctx, route, lease, ClaimOptions{Max: 1})
	if err != nil || len(jobs) == 0 {
		return nil, err
	}
	return jobs[0], nil
}

// ClaimOptions shape one ClaimBatch.
type ClaimOptions struct {
	// Max is the most messages taken at once (1 when <= 0); all of them are
	// of one lane, so one connection sends them.
	Max int
	// Pace, when positive, makes the lane taken from wait that long before
	// its next message is taken: the spacing of a per-minute limit, so the
	// workers do not take a message only to hand it back.
	Pace time.Duration
}

// ClaimBatch takes up to o.Max due messages of one lane of route, in one
// round trip, after handing expired leases back to ready. With nothing due
// it returns no job and next: when the first lane may send (zero when
// nothing waits at all), for the caller to Wait until then.
//
// Lanes take turns: after a take, the lane's next message is due no sooner
// than now, behind lanes that were due earlier, so a backlog of one mailbox
// does not hold up another's message, and a lane told to wait (Complete
// with Outcome.LaneWaits) is not looked at until its time comes.
func (q *Queue) ClaimBatch(ctx context.Context, route string, lease time.Duration, o ClaimOptions) (jobs []*Job, next time.Time, err error) {
	if o.Max <= 0 {
		o.Max = 1
	}
	rk := q.route(route)
	now := q.now()
	token := NewID(now)
	lost, _ := json.Marshal(Event{At: now, Status: StatusDeferred,
		Detail: "the worker delivering it stopped before finishing; handed to another worker"})
	res, err := claimScript.Run(ctx, q.rdb, []string{rk.Lanes(), rk.Ready(), rk.Inflight(), rk.LaneWait()},
		now.UnixMilli(), now.Add(lease).UnixMilli(), token, o.Max, o.Pace.Milliseconds(),
		rk.Msg(""), rk.Events(""), rk.Lane(""), lost).Slice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("claim from %s: %w", route, err)
	}
	if len(res) == 0 {
		return nil, time.Time{}, fmt.Errorf("claim from %s: empty reply", route)
	}
	if n, _ := res[0].(int64); n > 0 {
		next = time.UnixMilli(n)
	}
	for i := 1; i+2 < len(res); i += 3 {
		id, _ := res[i].(string)
		due, _ := res[i+1].(string)
		flat, _ := res[i+2].([]any)
		j := q.job(route, id, token, flat)
		j.Due, _ = strconv.ParseInt(due, 10, 64)
		jobs = append(jobs, j)
	}
	return jobs, next, nil
}

// MigrateBatch is how many ready ids Migrate checks per round trip.
const MigrateBatch = 500

// Migrate puts every id of route's ready set that is in no lane into its
// lane, and returns how many it moved. Messages queued by a version of
// mailgate before lanes are found this way: run it once at startup, before
// the workers. It is idempotent and reads the whole ready set, so it costs
// one round trip per MigrateBatch waiting messages.
func (q *Queue) Migrate(ctx context.Context, route string) (int, error) {
	rk := q.route(route)
	n := 0
	for start := int64(0); ; start += MigrateBatch {
		ids, err := q.rdb.ZRange(ctx, rk.Ready(), start, start+MigrateBatch-1).Result()
		if err != nil {
			return n, fmt.Errorf("migrate %s: %w", route, err)
		}
		if len(ids) == 0 {
			return n, nil
		}
		args := []any{rk.Msg(""), rk.Lane("")}
		for _, id := range ids {
			args = append(args, id)
		}
		moved, err := migrateScript.Run(ctx, q.rdb, []string{rk.Lanes(), rk.Ready(), rk.LaneWait()}, args...).Int()
		if err != nil {
			return n, fmt.Errorf("migrate %s: %w", route, err)
		}
		n += moved
		if len(ids) < MigrateBatch {
			return n, nil
		}
	}
}

// job reads a claimed message's hash, given as a flat field/value list.
func (q *Queue) job(route, id, token string, flat []any) *Job {
	h := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		h[k] = v
	}
	j := &Job{
		ID:        id,
		Route:     route,
		Lane:      h[fieldLane],
		App:       h[fieldApp],
		From:      h[fieldFrom],
		Body:      []byte(h[fieldBody]),
		Attempts:  atoi(h[fieldAttempts]),
		CreatedAt: time.UnixMilli(int64(atoi(h[fieldCreatedAt]))),
		Lease:     token,
	}
	if r := atoi(h[fieldRequeuedAt]); r > 0 {
		j.CreatedAt = time.UnixMilli(int64(r)) // max_age counts from an operator's requeue
	}
	if sa := time.UnixMilli(int64(atoi(h[fieldSendAt]))); sa.After(j.CreatedAt) {
		j.CreatedAt = sa // and from send_at for a scheduled message
	}
	if j.Lane == "" {
		j.Lane = laneOf(j.From) // stored before lanes
	}
	_ = json.Unmarshal([]byte(h[fieldRcpt]), &j.Recipients)
	return j
}

// Extend moves the job's lease deadline to now+lease. It returns
// ErrLeaseLost when another worker has taken the message over.
func (q *Queue) Extend(ctx context.Context, j *Job, lease time.Duration) error {
	ok, err := extendScript.Run(ctx, q.rdb,
		[]string{q.route(j.Route).Inflight(), q.route(j.Route).Msg(j.ID)},
		j.ID, j.Lease, q.now().Add(lease).UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("extend lease of %s: %w", j.ID, err)
	}
	if ok == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Outcome is what became of one attempt (or non-attempt) of a job.
type Outcome struct {
	// Status is sent, failed, deferred (retry at Due), or queued (handed back
	// without an attempt, e.g. on shutdown or while a limit is reached; due
	// at Due).
	Status string
	Due    time.Time
	// Attempted is false when no delivery was tried, so attempts stay as they were.
	Attempted bool
	Response  *Response
	Detail    string
	// Recipients, when non-nil on a deferral, replaces the envelope
	// recipients: those already accepted or refused for good are not sent again.
	Recipients []string
	// LaneWaits, on a message handed back (queued) because its mailbox must
	// wait, makes the whole lane wait until Due: none of its messages is
	// claimed before, and this one keeps its place at the front.
	LaneWaits bool
}

// Complete records o for j and releases the lease.
func (q *Queue) Complete(ctx context.Context, j *Job, o Outcome) error {
	keys, args, after := q.completeArgs(j, o)
	return after(completeScript.Run(ctx, q.rdb, keys, args...).Int())
}

// CompleteIn queues Complete of j with o on pipe, so a worker can send it
// together with its next message's admission in one round trip. The
// returned func reads the outcome once pipe was executed. A reply of
// NOSCRIPT (Redis restarted and lost its script cache) means nothing was
// recorded: it is reported as an error, and Complete, which loads the
// script, may be called instead.
func (q *Queue) CompleteIn(ctx context.Context, pipe redis.Pipeliner, j *Job, o Outcome) func() error {
	keys, args, after := q.completeArgs(j, o)
	cmd := completeScript.EvalSha(ctx, pipe, keys, args...)
	return func() error { return after(cmd.Int()) }
}

// Pipeline returns a pipeline on the queue's Redis client.
func (q *Queue) Pipeline() redis.Pipeliner { return q.rdb.Pipeline() }

func (q *Queue) completeArgs(j *Job, o Outcome) (keys []string, args []any, after func(int, error) error) {
	now := q.now()
	var event string
	if o.Attempted || o.Detail != "" {
		b, _ := json.Marshal(Event{At: now, Status: o.Status, Detail: o.Detail})
		event = string(b)
	}
	inc := "0"
	if o.Attempted {
		inc = "1"
	}
	var fields []any
	if o.Response != nil {
		fields = append(fields, fieldLastResponse, mustJSON(o.Response))
	}
	if o.Recipients != nil {
		fields = append(fields, fieldRcpt, mustJSON(o.Recipients))
	}
	if o.Status == StatusDeferred || o.Status == StatusQueued {
		fields = append(fields, fieldDueAt, o.Due.UnixMilli())
	}
	status := o.Status
	if status == StatusQueued && j.Attempts > 0 {
		status = StatusDeferred
	}
	lane := j.Lane
	if lane == "" {
		lane = laneOf(j.From)
	}
	park, place := "0", o.Due.UnixMilli()
	if o.LaneWaits && o.Status == StatusQueued {
		park = "1"
		if j.Due > 0 {
			place = min(j.Due, place)
		}
	}
	args = append([]any{j.ID, j.Lease, status, now.UnixMilli(), o.Due.UnixMilli(),
		q.retention.Milliseconds(), inc, event, lane, park, place}, fields...)
	rk := q.route(j.Route)
	keys = []string{rk.Inflight(), rk.Msg(j.ID), rk.Events(j.ID), rk.Ready(), rk.Failed(), rk.Waiting(),
		rk.Lane(lane), rk.Lanes(), rk.LaneWait()}
	after = func(ok int, err error) error {
		if err != nil {
			return fmt.Errorf("complete %s as %s: %w", j.ID, o.Status, err)
		}
		if ok == 0 {
			return ErrLeaseLost
		}
		if (status == StatusQueued || status == StatusDeferred) && park == "0" && !o.Due.After(now) {
			q.notify(j.Route)
		}
		return nil
	}
	return keys, args, after
}

// statusFields are the fields Get reads: all but the body.
var statusFields = []string{fieldApp, fieldRoute, fieldHeaderFrom, fieldTo, fieldCc, fieldSubject,
	fieldStatus, fieldAttempts, fieldCreatedAt, fieldUpdatedAt, fieldLastResponse, fieldMessageID,
	fieldMetadata, fieldDueAt, fieldSendAt}

// Get returns the status of message id on route.
func (q *Queue) Get(ctx context.Context, route, id string) (*Status, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	rk := q.route(route)
	pipe := q.rdb.Pipeline()
	hget := pipe.HMGet(ctx, rk.Msg(id), statusFields...)
	events := pipe.LRange(ctx, rk.Events(id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	h := named(statusFields, hget.Val())
	if h[fieldApp] == "" {
		return nil, ErrNotFound
	}
	s := &Status{
		ID:        id,
		App:       h[fieldApp],
		Route:     h[fieldRoute],
		From:      h[fieldHeaderFrom],
		Subject:   h[fieldSubject],
		Status:    h[fieldStatus],
		Attempts:  atoi(h[fieldAttempts]),
		CreatedAt: time.UnixMilli(int64(atoi(h[fieldCreatedAt]))).UTC(),
		UpdatedAt: time.UnixMilli(int64(atoi(h[fieldUpdatedAt]))).UTC(),
		MessageID: h[fieldMessageID],
		Events:    []Event{},
	}
	_ = json.Unmarshal([]byte(h[fieldTo]), &s.To)
	_ = json.Unmarshal([]byte(h[fieldCc]), &s.Cc)
	if s.To == nil {
		s.To = []string{}
	}
	if lr := h[fieldLastResponse]; lr != "" {
		s.LastResponse = &Response{}
		_ = json.Unmarshal([]byte(lr), s.LastResponse)
	}
	_ = json.Unmarshal([]byte(h[fieldMetadata]), &s.Metadata)
	if due := atoi(h[fieldDueAt]); due > 0 && (s.Status == StatusDeferred || s.Status == StatusQueued || s.Status == StatusScheduled) {
		t := time.UnixMilli(int64(due)).UTC()
		s.NextAttempt = &t
	}
	if sa := atoi(h[fieldSendAt]); sa > 0 {
		t := time.UnixMilli(int64(sa)).UTC()
		s.SendAt = &t
	}
	for _, e := range events.Val() {
		var ev Event
		if json.Unmarshal([]byte(e), &ev) == nil {
			ev.At = ev.At.UTC()
			s.Events = append(s.Events, ev)
		}
	}
	return s, nil
}

// Depth is how many messages of a route wait, are being delivered, and
// have failed (and are kept for an operator), and the bytes of those that
// wait or are being delivered, which Limits.RouteBytes bounds.
type Depth struct {
	Ready, InFlight, Failed int64
	Bytes                   int64
}

// Depth counts route's messages by state. Like Backlog, it first prunes the
// failed set of expired ids (PruneFailed), so the failed count is true.
func (q *Queue) Depth(ctx context.Context, route string) (Depth, error) {
	b, err := q.Backlog(ctx, route)
	return b.Depth, err
}

// AppWaiting returns how many messages of app wait or are being delivered on
// route, and their bytes: what Limits.AppMessages and AppBytes bound.
func (q *Queue) AppWaiting(ctx context.Context, route, app string) (messages, bytes int64, err error) {
	rk := q.route(route)
	pipe := q.rdb.Pipeline()
	r := pipe.ZCard(ctx, rk.Ready())
	i := pipe.ZCard(ctx, rk.Inflight())
	vals := pipe.HMGet(ctx, rk.Waiting(), waitingApp+app+waitingAppMessages, waitingApp+app+waitingAppBytes)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("waiting of %s on %s: %w", app, route, err)
	}
	if r.Val()+i.Val() == 0 {
		return 0, 0, nil
	}
	v := vals.Val()
	s0, _ := v[0].(string)
	s1, _ := v[1].(string)
	m, _ := strconv.ParseInt(s0, 10, 64)
	b, _ := strconv.ParseInt(s1, 10, 64)
	return m, b, nil
}

// Exists reports whether message id is stored on route.
func (q *Queue) Exists(ctx context.Context, route, id string) (bool, error) {
	n, err := q.rdb.Exists(ctx, q.route(route).Msg(id)).Result()
	if err != nil {
		return false, fmt.Errorf("exists %s: %w", id, err)
	}
	return n == 1, nil
}

// Ping checks that Redis answers.
func (q *Queue) Ping(ctx context.Context) error { return q.rdb.Ping(ctx).Err() }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("queue: marshal %T: %v", v, err)) // only plain types are stored
	}
	return string(b)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
