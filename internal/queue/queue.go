package queue

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
}

// Queue is the Redis-backed message store and work queue.
type Queue struct {
	rdb       redis.UniversalClient
	keys      keys.Space
	retention time.Duration
	now       func() time.Time
}

// New returns a Queue on rdb.
func New(rdb redis.UniversalClient, opts Options) *Queue {
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Queue{rdb: rdb, keys: keys.New(opts.Prefix), retention: opts.Retention, now: opts.Now}
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
func (q *Queue) Enqueue(ctx context.Context, m Message) (id string, created bool, err error) {
	if m.ID == "" {
		m.ID = NewID(q.now())
	}
	ks, args := q.enqueueCall(m)
	res, err := enqueueScript.Run(ctx, q.rdb, ks, args...).Slice()
	return enqueueReply(m.ID, res, err)
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
	// The ready set is ordered by due time: a scheduled message is simply
	// due later, and waits like any other (it counts against the limits).
	l := m.Limits
	args = append([]any{m.ID, due, useIdem, ttl.Milliseconds(), event, m.App, len(m.Body),
		l.RouteMessages, l.RouteBytes, l.AppMessages, l.AppBytes}, fields...)
	ks = []string{rk.Msg(m.ID), rk.Events(m.ID), rk.Ready(), idemKey, rk.Inflight(), rk.Waiting()}
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
	deadline := time.Now().Add(within)
	wait := 50 * time.Millisecond
	for {
		id, created, err = q.Enqueue(ctx, m)
		if errors.Is(err, ErrRouteFull) || errors.Is(err, ErrAppFull) {
			return "", false, err // an answer, not a failure: nothing was stored
		}
		if err == nil || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
	if err != nil {
		if ok, xerr := q.Exists(context.WithoutCancel(ctx), m.Route, m.ID); xerr == nil && ok {
			return m.ID, true, nil
		}
	}
	return id, created, err
}

// claimCandidates is how many due ids Claim looks at per round: workers of
// one route race for the first due ids, and a loser tries the next one.
const claimCandidates = 16

// Claim takes the next due message of route for lease, or returns nil
// when nothing is due. Expired leases are first handed back to ready.
//
// The due ids are read first and each is then claimed by a script that
// names the message's hash among its keys, as Redis Cluster requires (a
// script must not reach keys it was not given); a script that found its id
// gone to another worker moves on to the next.
func (q *Queue) Claim(ctx context.Context, route string, lease time.Duration) (*Job, error) {
	rk := q.route(route)
	now := q.now()
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	pipe := q.rdb.Pipeline()
	expired := pipe.ZRangeByScore(ctx, rk.Inflight(), &redis.ZRangeBy{Min: "-inf", Max: ms, Count: 100})
	due := pipe.ZRangeByScore(ctx, rk.Ready(), &redis.ZRangeBy{Min: "-inf", Max: ms, Count: claimCandidates})
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("claim from %s: %w", route, err)
	}
	if ids := expired.Val(); len(ids) > 0 {
		if err := q.reclaim(ctx, rk, now, ids); err != nil {
			return nil, fmt.Errorf("claim from %s: %w", route, err)
		}
		due = q.rdb.ZRangeByScore(ctx, rk.Ready(), &redis.ZRangeBy{Min: "-inf", Max: ms, Count: claimCandidates})
	}
	token := NewID(now)
	// Every round removes the ids it looked at from ready or finds them
	// gone; the bound only keeps a pathological race from spinning.
	for ids, round := due.Val(), 0; len(ids) > 0 && round < 10; round++ {
		for _, id := range ids {
			res, err := claimScript.Run(ctx, q.rdb, []string{rk.Ready(), rk.Inflight(), rk.Msg(id)},
				id, now.UnixMilli(), now.Add(lease).UnixMilli(), token).StringSlice()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("claim from %s: %w", route, err)
			}
			return q.job(route, id, token, res), nil
		}
		// Every candidate went to another worker: look again.
		var err error
		ids, err = q.rdb.ZRangeByScore(ctx, rk.Ready(), &redis.ZRangeBy{Min: "-inf", Max: ms, Count: claimCandidates}).Result()
		if err != nil {
			return nil, fmt.Errorf("claim from %s: %w", route, err)
		}
	}
	return nil, nil
}

// reclaim hands the messages of expired leases back to ready.
func (q *Queue) reclaim(ctx context.Context, rk keys.Route, now time.Time, ids []string) error {
	lost, _ := json.Marshal(Event{At: now, Status: StatusDeferred,
		Detail: "the worker delivering it stopped before finishing; handed to another worker"})
	for _, id := range ids {
		err := reclaimScript.Run(ctx, q.rdb, []string{rk.Inflight(), rk.Ready(), rk.Msg(id), rk.Events(id)},
			id, now.UnixMilli(), lost).Err()
		if err != nil {
			return fmt.Errorf("take back the expired lease of %s: %w", id, err)
		}
	}
	return nil
}

// job reads a claimed message's hash, given as a flat field/value list.
func (q *Queue) job(route, id, token string, flat []string) *Job {
	h := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		h[flat[i]] = flat[i+1]
	}
	j := &Job{
		ID:        id,
		Route:     route,
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
}

// Complete records o for j and releases the lease.
func (q *Queue) Complete(ctx context.Context, j *Job, o Outcome) error {
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
	args := append([]any{j.ID, j.Lease, status, now.UnixMilli(), o.Due.UnixMilli(),
		q.retention.Milliseconds(), inc, event}, fields...)
	rk := q.route(j.Route)
	keys := []string{rk.Inflight(), rk.Msg(j.ID), rk.Events(j.ID), rk.Ready(), rk.Failed(), rk.Waiting()}
	ok, err := completeScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("complete %s as %s: %w", j.ID, o.Status, err)
	}
	if ok == 0 {
		return ErrLeaseLost
	}
	return nil
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
