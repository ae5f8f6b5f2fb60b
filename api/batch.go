package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/compose"
	"github.com/mailgate/mailgate/internal/intake"
	"github.com/mailgate/mailgate/internal/keys"
	"github.com/mailgate/mailgate/internal/queue"
)

// POST /v1/messages/batch: many JSON submissions in one request.
//
// Each item is what POST /v1/messages takes as JSON, plus its own
// idempotency_key; each is checked and rendered on its own, and every one
// that passes is stored in one round trip to Redis (a pipeline of the same
// atomic enqueue script a single submission runs). The answer has one
// result per item, in order: the id, or the problem that refused it. A
// refused item never keeps the others out.
//
// Redis failing: when no message of the batch is confirmed stored and Redis
// is why, the answer is 503 queue_unavailable for the whole batch, as for a
// single submission, its detail counting what may be stored. When Redis
// failed halfway (a pipeline cut short), the answer is 200 and each result
// says what became of its message: an id means stored, queue_unavailable
// means not stored, and queue_unavailable with maybe_stored means that the
// message's script reached Redis as it went away and Redis did not come
// back to say whether it stored it (it is delivered if it did), as a single
// submission's 503 says. Sending such a message again with the same
// idempotency_key is safe either way. With redis.min_replicas_acked, a
// queue_unavailable item may also be stored but not yet replicated (its
// detail says so, and it has maybe_stored too); the same retry settles it.

// MaxBatchMessages is the most items a batch may hold.
const MaxBatchMessages = 500

// DefaultMaxBatchBytes bounds a batch request's body when
// Options.MaxBatchBytes is 0. A batch may be smaller still: the most it is
// read is twice its app's max_message_bytes for each of MaxBatchMessages
// items.
const DefaultMaxBatchBytes = 64 << 20

// batchRequest is the body of POST /v1/messages/batch.
type batchRequest struct {
	Messages []jsonBytes `json:"messages"`
}

// jsonBytes is one item, kept as its JSON text (a json.RawMessage that
// does not copy twice) to be decoded on its own, so that its errors are
// its own.
type jsonBytes []byte

func (j *jsonBytes) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// batchItem is one message of a batch.
type batchItem struct {
	jsonSubmission
	IdempotencyKey string `json:"idempotency_key"`
}

// batchResult is one item's outcome.
type batchResult struct {
	ID     string   `json:"id,omitempty"`
	Status string   `json:"status,omitempty"`
	Error  *Problem `json:"error,omitempty"`
	// MaybeStored marks an Error of queue_unavailable for a message that
	// may be stored all the same: its outcome is unknown, or it is stored
	// but not yet replicated.
	MaybeStored bool `json:"maybe_stored,omitempty"`
}

// batchLimit is the most of a batch's body that is read for app.
func (s *Server) batchLimit(app *appPolicy) int64 {
	// Each item may be twice the app's message limit, as a single
	// submission's body may (base64 in JSON): the sum over a full batch,
	// capped.
	return min(MaxBatchMessages*2*app.maxBytes+64<<10, s.maxBatchBytes)
}

func errBatchTooLarge(detail string) *Problem {
	return problem(http.StatusRequestEntityTooLarge, CodeBatchTooLarge, "Batch too large", detail)
}

func (s *Server) submitBatch(c *echo.Context) error {
	app, err := requireApp(c)
	if err != nil {
		return err
	}
	limit := s.batchLimit(app)
	release, err := s.admitBody(c, app, limit)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Status == http.StatusRequestEntityTooLarge {
			return errBatchTooLarge(fmt.Sprintf("a batch of app %s may be at most %d bytes", app.id, limit))
		}
		return err
	}
	defer release()
	if mt, _, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return problem(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Unsupported media type",
			"POST /v1/messages/batch takes application/json")
	}
	if c.Request().Header.Get("Idempotency-Key") != "" {
		return errValidation("a batch takes an idempotency_key per message, not an Idempotency-Key header",
			FieldError{Field: "Idempotency-Key", Message: "give each message its own idempotency_key"})
	}
	raw, err := readSized(s.limitedBody(c, limit), c.Request().ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errBatchTooLarge(fmt.Sprintf("a batch of app %s may be at most %d bytes", app.id, limit))
		}
		return s.bodyError(err, app)
	}
	if !utf8.Valid(raw) {
		return errInvalidBody("the body is not valid UTF-8")
	}
	if err := batchShape(raw); err != nil {
		return err
	}
	var req batchRequest
	if err := decodeStrict(raw, &req); err != nil {
		return err
	}
	raw = nil // the items hold their own copies
	switch n := len(req.Messages); {
	case n == 0:
		return errValidation("messages must hold at least one message", FieldError{Field: "messages", Message: "empty"})
	case n > MaxBatchMessages:
		return errBatchTooLarge(fmt.Sprintf("a batch holds at most %d messages, this one has %d", MaxBatchMessages, n))
	}
	if err := s.rateLimitN(c, app, len(req.Messages)); err != nil {
		return err
	}

	results := make([]batchResult, len(req.Messages))
	subs := make([]intake.Submission, 0, len(req.Messages))
	pos := make([]int, 0, len(req.Messages)) // index in results of each of subs
	now := s.now()
	itemLimit := 2*app.maxBytes + 64<<10
	for i, item := range req.Messages {
		if int64(len(item)) > itemLimit {
			results[i].Error = errTooLarge(app)
			continue
		}
		sub, err := s.batchSubmission(app, item, now)
		req.Messages[i] = nil
		if err != nil {
			results[i].Error = s.itemProblem(app, err)
			continue
		}
		subs = append(subs, sub)
		pos = append(pos, i)
	}
	stored, unavailable, unknown, unreplicated := 0, 0, 0, 0
	for j, o := range s.intake.AcceptMany(c.Request().Context(), app.Policy, subs) {
		i := pos[j]
		var refused *apppolicy.Refusal
		var qe *intake.QueueError
		var full *intake.FullError
		var notReplicated *queue.NotReplicatedError
		switch err := o.Err; {
		case err == nil:
			results[i] = batchResult{ID: o.Result.ID, Status: queue.StatusQueued}
			if !subs[j].SendAt.IsZero() {
				results[i].Status = queue.StatusScheduled
			}
			stored++
		case errors.As(err, &refused):
			results[i].Error = refusalProblem(refused)
		case errors.As(err, &full):
			results[i].Error = fullProblem(full, app.route)
		case errors.Is(err, intake.ErrIdempotencyKey):
			results[i].Error = errValidation("idempotency_key must be at most 255 characters on one line",
				FieldError{Field: "idempotency_key", Message: "too long or not one line"})
		case errors.As(err, &notReplicated):
			p := errQueueUnavailable()
			p.Detail = fmt.Sprintf("the message may be stored but is not yet replicated (%d of %d replicas "+
				"confirmed it within %s); send it again with the same idempotency_key to be sure it is sent once "+
				"(message id %s)", notReplicated.Got, notReplicated.Want, notReplicated.Timeout, notReplicated.ID)
			results[i].Error, results[i].MaybeStored = p, true
			unreplicated++
		case errors.As(err, &qe) && qe.MaybeStored:
			p := errQueueUnavailable()
			p.Detail = "Redis failed while this message was being stored and did not recover within " +
				s.intake.RetryFor().String() + "; whether it was stored cannot be known until it does, and a " +
				"stored message is delivered. Send it again with the same idempotency_key to be sure it is " +
				"sent once (message id " + qe.ID + ")"
			results[i].Error, results[i].MaybeStored = p, true
			unknown++
		case errors.As(err, &qe):
			p := errQueueUnavailable()
			p.Detail = "Redis failed while this message was being stored and did not recover within " +
				s.intake.RetryFor().String() + "; it was not stored. Send it again with the same " +
				"idempotency_key to be sure it is sent once (message id " + qe.ID + ")"
			results[i].Error = p
			unavailable++
		default:
			results[i].Error = s.itemProblem(app, err)
		}
	}
	if stored == 0 && unknown+unreplicated+unavailable > 0 {
		// Nothing of this batch is confirmed stored, and Redis is why: the
		// request failed as a whole, as a single submission's would. Its
		// detail says what may be stored all the same.
		return batchUnavailable(len(results), unknown, unreplicated, unavailable, s.intake.RetryFor())
	}
	return c.JSON(http.StatusOK, map[string][]batchResult{"results": results})
}

// batchUnavailable is the answer to a batch of n messages none of which is
// confirmed stored because Redis failed: unknown of them may be stored
// (their outcome could not be learnt), unreplicated may be stored but are
// not replicated, unavailable were not stored.
func batchUnavailable(n, unknown, unreplicated, unavailable int, retryFor time.Duration) *Problem {
	p := errQueueUnavailable()
	p.retryAfter = time.Second
	if unknown+unreplicated == 0 {
		p.Detail = fmt.Sprintf("Redis failed while the batch was being stored and did not recover within %s; "+
			"none of its %d messages was stored. Send the batch again, with the same idempotency keys, "+
			"to be sure each is sent once", retryFor, n)
		return p
	}
	var parts []string
	if unknown > 0 {
		parts = append(parts, fmt.Sprintf("%d may be stored: Redis failed while they were being stored and did "+
			"not recover within %s, so whether they were cannot be known until it does, and a stored message is "+
			"delivered", unknown, retryFor))
	}
	if unreplicated > 0 {
		parts = append(parts, fmt.Sprintf("%d may be stored but are not yet replicated", unreplicated))
	}
	if unavailable > 0 {
		parts = append(parts, fmt.Sprintf("%d were not stored", unavailable))
	}
	p.Detail = fmt.Sprintf("none of the batch's %d messages is confirmed stored: %s. Send the batch again, "+
		"with the same idempotency keys, to be sure each is sent once", n, strings.Join(parts, "; "))
	return p
}

// batchSubmission decodes and renders one item.
func (s *Server) batchSubmission(app *appPolicy, item []byte, now time.Time) (intake.Submission, error) {
	if err := checkJSONShape(item); err != nil {
		return intake.Submission{}, err
	}
	var js batchItem
	if err := decodeSubmission(item, &js.jsonSubmission, &js.IdempotencyKey); err != nil {
		return intake.Submission{}, err
	}
	sub, err := js.submission()
	if err != nil {
		return intake.Submission{}, err
	}
	if sub.in.From == "" {
		sub.in.From = app.defaultFrom
	}
	opts, err := s.submissionOptions(sub.sendAt)
	if err != nil {
		return intake.Submission{}, err
	}
	if err := s.applyTemplate(sub); err != nil {
		return intake.Submission{}, err
	}
	if err := checkRecipientCount(app, len(sub.in.To)+len(sub.in.Cc)+len(sub.in.Bcc)); err != nil {
		return intake.Submission{}, err
	}
	id := queue.NewID(now)
	msg, err := compose.Build(sub.in, compose.Options{Now: now, MessageIDLocal: id})
	if err != nil {
		return intake.Submission{}, composeProblem(err)
	}
	return intake.Submission{ID: id, Message: msg, IdempotencyKey: js.IdempotencyKey,
		SendAt: opts.sendAt, Metadata: sub.metadata}, nil
}

// itemProblem is the problem of one item; anything not already a problem
// is an internal error, reported for that item alone.
func (s *Server) itemProblem(app *appPolicy, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	s.log.Error("batch item failed", "app", app.id, "err", err)
	return problem(http.StatusInternalServerError, CodeInternal, "Internal error", "the message could not be processed")
}

// rateLimitN takes n messages of the app's per-minute rate limit at once,
// or refuses them all with 429.
func (s *Server) rateLimitN(c *echo.Context, app *appPolicy, n int) error {
	if s.limiter == nil || app.perMinute <= 0 {
		return nil
	}
	key := keys.New(s.cfg.Redis.KeyPrefix).APIRate(app.id) // the same limit as rateLimit's
	res, err := s.limiter.AllowN(c.Request().Context(), key, redis_rate.PerMinute(app.perMinute), n)
	if err != nil {
		s.log.Error("rate limiter unavailable", "err", err)
		return errQueueUnavailable()
	}
	if res.Allowed == 0 {
		p := problem(http.StatusTooManyRequests, CodeRateLimited, "Rate limit exceeded",
			fmt.Sprintf("app %s may submit %d messages a minute; this batch has %d", app.id, app.perMinute, n))
		p.retryAfter = max(res.RetryAfter, time.Second)
		return p
	}
	return nil
}

// batchShape counts the members of the batch's top-level containers (the
// messages array above all) in one pass that allocates nothing, before
// anything is decoded, as checkJSONShape does for one message: what lies
// deeper is each item's, checked by checkJSONShape item by item. raw need
// not be valid JSON.
func batchShape(raw []byte) error {
	depth, entries, empty := 0, [3]int{}, [3]bool{}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if depth <= 2 && depth > 0 && empty[depth] && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ']' && c != '}' {
			empty[depth], entries[depth] = false, 1
		}
		switch c {
		case '"':
			i = jsonStringEnd(raw, i) - 1
		case '{', '[':
			if depth++; depth <= 2 {
				entries[depth], empty[depth] = 0, true
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth > 2 {
				continue
			}
			if entries[depth]++; entries[depth] > MaxBatchMessages {
				return errBatchTooLarge(fmt.Sprintf("a batch holds at most %d messages", MaxBatchMessages))
			}
		}
	}
	return nil
}
