package limits

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/keys"
)

const (
	// messageWindow is the period the per-minute limit is spread over: a
	// minute plus one second, so that evenly spaced admissions never put more
	// than the limit into any 60 s window (see the package comment).
	messageWindow = time.Minute + time.Second

	// recipientWindow is the rolling window of the daily recipient limit: 24
	// hours plus a margin for the time between admission and Exchange's count
	// and for clock differences between instances.
	recipientWindow = 24*time.Hour + 5*time.Minute

	// usageMinute is the window of Usage.MessagesLastMinute.
	usageMinute = time.Minute

	// maxConnWait caps the wait answered when all connection slots are taken.
	maxConnWait = time.Second

	// DefaultLeaseTTL is the lease TTL AcquireConn uses when given none.
	DefaultLeaseTTL = 2 * time.Minute
)

// ErrTooManyRecipients means a message has more recipients than its mailbox
// may send in a whole day: it can never be admitted, so waiting is pointless.
var ErrTooManyRecipients = errors.New("more recipients than the mailbox's daily limit")

// Limits are a mailbox's submission limits; 0 means no limit.
type Limits struct {
	MessagesPerMinute int
	MaxConnections    int
	RecipientsPerDay  int
}

// Usage is what a mailbox is using now, for GET /v1/routes.
type Usage struct {
	Connections        int // live connection leases
	MessagesLastMinute int // messages admitted in the last 60 s
	RecipientsLastDay  int // recipients admitted within the daily window (24 h plus the margin)
}

// Limiter keeps per-mailbox limits in Redis, shared by every Limiter (every
// mailgate instance) on the same Redis and prefix. It is safe for concurrent
// use.
type Limiter struct {
	rdb   redis.UniversalClient
	space keys.Space
	now   func() time.Time
}

// New returns a Limiter on rdb whose keys start with prefix ("mailgate" when
// empty). now is the clock of the connection leases and of the recipient log
// (time.Now when nil); the per-minute limit uses the Redis server's clock.
func New(rdb redis.UniversalClient, prefix string, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rdb: rdb, space: keys.New(prefix), now: now}
}

func (l *Limiter) keys(route, mailbox string) (keys.Mailbox, error) {
	return l.space.Mailbox(route, mailbox)
}

// AdmitMessage decides whether a message with the given number of envelope
// recipients may be submitted now through mailbox; call it right before MAIL
// FROM. A zero wait means go ahead: the message has been counted against both
// limits. A positive wait means the message was not counted and should be
// tried again after wait. A message with more recipients than
// lim.RecipientsPerDay returns an error wrapping ErrTooManyRecipients.
//
// lim.MaxConnections is not used here; see AcquireConn.
func (l *Limiter) AdmitMessage(ctx context.Context, route, mailbox string, recipients int, lim Limits) (time.Duration, error) {
	wait, err := l.admit(ctx, route, mailbox, recipients, lim)
	if err != nil {
		return 0, fmt.Errorf("admit message from %s on route %s: %w", mailbox, route, err)
	}
	return wait, nil
}

func (l *Limiter) admit(ctx context.Context, route, mailbox string, recipients int, lim Limits) (time.Duration, error) {
	keys, args, done, err := l.admitArgs(route, mailbox, recipients, lim)
	if err != nil || keys == nil {
		return 0, err
	}
	return done(admitScript.Run(ctx, l.rdb, keys, args...).Int64())
}

// AdmitMessageIn is AdmitMessage queued on pipe, so a worker can send it
// together with the previous message's outcome in one round trip; the
// returned func gives AdmitMessage's answer once pipe was executed. A reply
// of NOSCRIPT (Redis lost its script cache) means nothing was counted: it
// is an error, and AdmitMessage may be called instead.
func (l *Limiter) AdmitMessageIn(ctx context.Context, pipe redis.Pipeliner, route, mailbox string, recipients int, lim Limits) func() (time.Duration, error) {
	keys, args, done, err := l.admitArgs(route, mailbox, recipients, lim)
	if err != nil || keys == nil {
		return func() (time.Duration, error) {
			if err != nil {
				return 0, fmt.Errorf("admit message from %s on route %s: %w", mailbox, route, err)
			}
			return 0, nil
		}
	}
	cmd := admitScript.EvalSha(ctx, pipe, keys, args...)
	return func() (time.Duration, error) {
		wait, err := done(cmd.Int64())
		if err != nil {
			return 0, fmt.Errorf("admit message from %s on route %s: %w", mailbox, route, err)
		}
		return wait, nil
	}
}

// admitArgs prepares admitScript; keys is nil when no script needs to run
// (no message limit: admitted at once).
func (l *Limiter) admitArgs(route, mailbox string, recipients int, lim Limits) (keys []string, args []any,
	done func(int64, error) (time.Duration, error), err error) {
	if recipients < 1 {
		return nil, nil, nil, fmt.Errorf("%d recipients", recipients)
	}
	if lim.RecipientsPerDay > 0 && recipients > lim.RecipientsPerDay {
		return nil, nil, nil, fmt.Errorf("%w: %d recipients, %d a day", ErrTooManyRecipients, recipients, lim.RecipientsPerDay)
	}
	if lim.MessagesPerMinute <= 0 && lim.RecipientsPerDay <= 0 {
		return nil, nil, nil, nil
	}
	k, err := l.keys(route, mailbox)
	if err != nil {
		return nil, nil, nil, err
	}
	// One script: the daily check, the GCRA, the recording (see the
	// package comment, "Order inside AdmitMessage").
	keys = []string{k.Log, k.Recipients, gcraPrefix + k.GCRA}
	args = []any{l.now().UnixMilli(), recipientWindow.Milliseconds(), recipients, lim.RecipientsPerDay, rand.Text(),
		max(lim.MessagesPerMinute, 0), messageWindow.Seconds()}
	done = func(ms int64, err error) (time.Duration, error) {
		if err != nil {
			return 0, fmt.Errorf("admit: %w", err)
		}
		if ms < 0 {
			return 0, fmt.Errorf("%w: %d recipients, %d a day", ErrTooManyRecipients, recipients, lim.RecipientsPerDay)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	return keys, args, done, nil
}

// gcraPrefix is what redis_rate puts in front of the key it is given; the
// admit script uses the same key, so the GCRA state is redis_rate's.
const gcraPrefix = "rate:"

// Usage reads what mailbox is using now. It changes nothing, so expired
// leases and log entries that no write has removed yet are left out by time.
func (l *Limiter) Usage(ctx context.Context, route, mailbox string) (Usage, error) {
	k, err := l.keys(route, mailbox)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %s on route %s: %w", mailbox, route, err)
	}
	now := l.now()
	v, err := usageScript.RunRO(ctx, l.rdb, []string{k.Conns, k.Log, k.Recipients},
		now.UnixMilli(), now.Add(-usageMinute).UnixMilli(), now.Add(-recipientWindow).UnixMilli()).Int64Slice()
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %s on route %s: %w", mailbox, route, err)
	}
	if len(v) != 3 {
		return Usage{}, fmt.Errorf("usage of %s on route %s: script returned %d values", mailbox, route, len(v))
	}
	return Usage{Connections: int(v[0]), MessagesLastMinute: int(v[1]), RecipientsLastDay: int(v[2])}, nil
}

// ceilMS rounds a positive wait up to whole milliseconds, so that a caller
// retrying after it does not come back a fraction of a millisecond early.
func ceilMS(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// Spacing is the time between two admissions of a mailbox allowed
// perMinute messages a minute, rounded up to whole milliseconds: the queue
// keeps a mailbox's messages back that long after one was taken, so the
// workers seldom take one the limit would hand back.
func Spacing(perMinute int) time.Duration {
	if perMinute <= 0 {
		return 0
	}
	return ceilMS(messageWindow / time.Duration(perMinute))
}
