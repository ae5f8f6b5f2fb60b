package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status values of a message, as the API shows them.
const (
	StatusQueued   = "queued"
	StatusSending  = "sending"
	StatusDeferred = "deferred"
	StatusSent     = "sent"
	StatusFailed   = "failed"
)

// IdempotencyTTL is how long an Idempotency-Key is remembered per app.
const IdempotencyTTL = 24 * time.Hour

// ErrNotFound means no message with that id exists (or it expired).
var ErrNotFound = errors.New("message not found")

// ErrLeaseLost means the worker's lease ran out and the message was handed
// to another worker; the caller's outcome was not recorded.
var ErrLeaseLost = errors.New("lease lost: the message was taken over by another worker")

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
	prefix    string
	retention time.Duration
	now       func() time.Time
	group     *grouper // EnqueueRetrying's concurrent calls, sent together
}

// New returns a Queue on rdb.
func New(rdb redis.UniversalClient, opts Options) *Queue {
	if opts.Prefix == "" {
		opts.Prefix = "mailgate"
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	q := &Queue{rdb: rdb, prefix: opts.Prefix, retention: opts.Retention, now: opts.Now}
	q.group = &grouper{q: q, maxFlushers: groupFlushers, maxGroup: groupMax}
	return q
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

func (q *Queue) routeKey(route, suffix string) string {
	return q.prefix + ":{" + route + "}:" + suffix
}
func (q *Queue) msgKey(route, id string) string { return q.routeKey(route, "msg:"+id) }
func (q *Queue) evKey(route, id string) string  { return q.routeKey(route, "ev:"+id) }
func (q *Queue) readyKey(route string) string   { return q.routeKey(route, "ready") }
func (q *Queue) inflightKey(route string) string {
	return q.routeKey(route, "inflight")
}
func (q *Queue) failedKey(route string) string { return q.routeKey(route, "failed") }
func (q *Queue) idemKey(route, app, key string) string {
	h := sha256.Sum256([]byte(key))
	return q.routeKey(route, "idem:"+app+":"+hex.EncodeToString(h[:16]))
}

// Enqueue stores m and queues it for its route in one atomic step. It
// returns the message's id; created is false when the Idempotency-Key was
// already used, and the id is then the first message's. Enqueue is
// idempotent by id: called again with the same m.ID it changes nothing and
// reports created, so a call whose reply was lost can safely be repeated.
func (q *Queue) Enqueue(ctx context.Context, m Message) (id string, created bool, err error) {
	if m.ID == "" {
		m.ID = NewID(q.now())
	}
	keys, args := q.enqueueCall(m)
	res, err := enqueueScript.Run(ctx, q.rdb, keys, args...).Slice()
	return enqueueReply(m.ID, res, err)
}

// enqueueCall is the keys and arguments of enqueueScript for m, whose ID
// is set.
func (q *Queue) enqueueCall(m Message) (keys []string, args []any) {
	now := q.now()
	ms := now.UnixMilli()
	event, _ := json.Marshal(Event{At: now, Status: StatusQueued})
	fields := []any{
		"app", m.App,
		"route", m.Route,
		"from", m.From,
		"header_from", m.HeaderFrom,
		"rcpt", mustJSON(m.Recipients),
		"to", mustJSON(m.To),
		"cc", mustJSON(m.Cc),
		"subject", m.Subject,
		"message_id", m.MessageID,
		"metadata", mustJSON(m.Metadata),
		"status", StatusQueued,
		"attempts", 0,
		"created_at", ms,
		"updated_at", ms,
		"lease", "",
		"body", m.Body,
	}
	useIdem := "0"
	idemKey := q.routeKey(m.Route, "idem:-")
	if m.IdempotencyKey != "" {
		useIdem = "1"
		idemKey = q.idemKey(m.Route, m.App, m.IdempotencyKey)
	}
	args = append([]any{m.ID, ms, useIdem, IdempotencyTTL.Milliseconds(), event}, fields...)
	keys = []string{q.msgKey(m.Route, m.ID), q.evKey(m.Route, m.ID), q.readyKey(m.Route), idemKey}
	return keys, args
}

// enqueueReply reads enqueueScript's reply for message id.
func enqueueReply(id string, res []any, err error) (string, bool, error) {
	if err != nil {
		return "", false, fmt.Errorf("enqueue %s: %w", id, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("enqueue %s: unexpected reply %v", id, res)
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
		id, created, err = q.group.enqueue(ctx, m)
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

// Claim takes the next due message of route for lease, or returns nil
// when nothing is due.
func (q *Queue) Claim(ctx context.Context, route string, lease time.Duration) (*Job, error) {
	now := q.now()
	token := NewID(now)
	lost, _ := json.Marshal(Event{At: now, Status: StatusDeferred,
		Detail: "the worker delivering it stopped before finishing; handed to another worker"})
	keys := []string{q.readyKey(route), q.inflightKey(route)}
	res, err := claimScript.Run(ctx, q.rdb, keys,
		now.UnixMilli(), now.Add(lease).UnixMilli(), token,
		q.routeKey(route, "msg:"), q.routeKey(route, "ev:"), lost).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim from %s: %w", route, err)
	}
	if len(res) < 1 {
		return nil, nil
	}
	id, _ := res[0].(string)
	h := make(map[string]string, len(res)/2)
	for i := 1; i+1 < len(res); i += 2 {
		k, _ := res[i].(string)
		v, _ := res[i+1].(string)
		h[k] = v
	}
	j := &Job{
		ID:        id,
		Route:     route,
		App:       h["app"],
		From:      h["from"],
		Body:      []byte(h["body"]),
		Attempts:  atoi(h["attempts"]),
		CreatedAt: time.UnixMilli(int64(atoi(h["created_at"]))),
		Lease:     token,
	}
	if r := atoi(h["requeued_at"]); r > 0 {
		j.CreatedAt = time.UnixMilli(int64(r)) // max_age counts from an operator's requeue
	}
	_ = json.Unmarshal([]byte(h["rcpt"]), &j.Recipients)
	return j, nil
}

// Extend moves the job's lease deadline to now+lease. It returns
// ErrLeaseLost when another worker has taken the message over.
func (q *Queue) Extend(ctx context.Context, j *Job, lease time.Duration) error {
	ok, err := extendScript.Run(ctx, q.rdb,
		[]string{q.inflightKey(j.Route), q.msgKey(j.Route, j.ID)},
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
		fields = append(fields, "last_response", mustJSON(o.Response))
	}
	if o.Recipients != nil {
		fields = append(fields, "rcpt", mustJSON(o.Recipients))
	}
	if o.Status == StatusDeferred || o.Status == StatusQueued {
		fields = append(fields, "due_at", o.Due.UnixMilli())
	}
	status := o.Status
	if status == StatusQueued && j.Attempts > 0 {
		status = StatusDeferred
	}
	args := append([]any{j.ID, j.Lease, status, now.UnixMilli(), o.Due.UnixMilli(),
		q.retention.Milliseconds(), inc, event}, fields...)
	keys := []string{q.inflightKey(j.Route), q.msgKey(j.Route, j.ID), q.evKey(j.Route, j.ID),
		q.readyKey(j.Route), q.failedKey(j.Route)}
	ok, err := completeScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("complete %s as %s: %w", j.ID, o.Status, err)
	}
	if ok == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Get returns the status of message id on route.
func (q *Queue) Get(ctx context.Context, route, id string) (*Status, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	pipe := q.rdb.Pipeline()
	hget := pipe.HMGet(ctx, q.msgKey(route, id), "app", "route", "header_from", "to", "cc", "subject",
		"status", "attempts", "created_at", "updated_at", "last_response", "message_id", "metadata", "due_at")
	events := pipe.LRange(ctx, q.evKey(route, id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	v := hget.Val()
	str := func(i int) string { s, _ := v[i].(string); return s }
	if str(0) == "" {
		return nil, ErrNotFound
	}
	s := &Status{
		ID:        id,
		App:       str(0),
		Route:     str(1),
		From:      str(2),
		Subject:   str(5),
		Status:    str(6),
		Attempts:  atoi(str(7)),
		CreatedAt: time.UnixMilli(int64(atoi(str(8)))).UTC(),
		UpdatedAt: time.UnixMilli(int64(atoi(str(9)))).UTC(),
		MessageID: str(11),
		Events:    []Event{},
	}
	_ = json.Unmarshal([]byte(str(3)), &s.To)
	_ = json.Unmarshal([]byte(str(4)), &s.Cc)
	if s.To == nil {
		s.To = []string{}
	}
	if lr := str(10); lr != "" {
		s.LastResponse = &Response{}
		_ = json.Unmarshal([]byte(lr), s.LastResponse)
	}
	_ = json.Unmarshal([]byte(str(12)), &s.Metadata)
	if due := atoi(str(13)); due > 0 && (s.Status == StatusDeferred || s.Status == StatusQueued) {
		t := time.UnixMilli(int64(due)).UTC()
		s.NextAttempt = &t
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
// have failed (and are kept for an operator).
type Depth struct {
	Ready, InFlight, Failed int64
}

// Depth counts route's messages by state.
func (q *Queue) Depth(ctx context.Context, route string) (Depth, error) {
	pipe := q.rdb.Pipeline()
	r := pipe.ZCard(ctx, q.readyKey(route))
	i := pipe.ZCard(ctx, q.inflightKey(route))
	f := pipe.ZCard(ctx, q.failedKey(route))
	if _, err := pipe.Exec(ctx); err != nil {
		return Depth{}, fmt.Errorf("depth of %s: %w", route, err)
	}
	return Depth{Ready: r.Val(), InFlight: i.Val(), Failed: f.Val()}, nil
}

// Exists reports whether message id is stored on route.
func (q *Queue) Exists(ctx context.Context, route, id string) (bool, error) {
	n, err := q.rdb.Exists(ctx, q.msgKey(route, id)).Result()
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
