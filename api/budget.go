package api

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
)

// DefaultMaxInFlightBytes is the in-flight body budget when
// Options.MaxInFlightBytes is 0.
const DefaultMaxInFlightBytes = 256 << 20

// bodyBudget bounds the request bodies the API holds at once. Each
// submission reserves its body's size before reading it: the Content-Length,
// or, without one, the most the handler will read. A submission holds
// about three times its body while it is handled (the body, the decoded
// attachments, the rendered message; package compose), so the budget
// bounds the heap of the submissions in flight at about three times it.
//
// A request that does not fit is refused at once with 503 and Retry-After
// rather than queued: a waiting request would hold its connection and its
// unread body in the kernel's buffers, and the client has retries for 503
// anyway. A body larger than the whole budget is admitted when it is the
// only one in flight, so that a small budget never refuses a message the
// app's limits allow.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

func newBodyBudget(max int64) *bodyBudget {
	if max <= 0 {
		max = DefaultMaxInFlightBytes
	}
	return &bodyBudget{max: max}
}

// reserve takes n bytes of the budget if they fit and returns the function
// that gives them back (safe to call more than once).
func (b *bodyBudget) reserve(n int64) (release func(), ok bool) {
	n = min(max(n, 0), b.max)
	for {
		used := b.used.Load()
		if used+n > b.max {
			return nil, false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return sync.OnceFunc(func() { b.used.Add(-n) }), true
		}
	}
}

// admitBody checks the request's declared size against limit, the most
// the handler will read, and reserves the body's room in the budget. The
// caller defers release.
func (s *Server) admitBody(c *echo.Context, app *appPolicy, limit int64) (release func(), err error) {
	n := c.Request().ContentLength // -1 when unknown
	if n > limit {
		return nil, errTooLarge(app)
	}
	if n < 0 {
		n = limit
	}
	release, ok := s.budget.reserve(n)
	if !ok {
		s.log.Warn("request refused: in-flight body budget exhausted", "app", app.id,
			"bytes", n, "budget", s.budget.max)
		p := problem(http.StatusServiceUnavailable, CodeQueueUnavailable, "Server busy",
			fmt.Sprintf("too many large submissions are being received at once (%d bytes in flight at most); nothing was queued, try again", s.budget.max))
		p.retryAfter = time.Second
		return nil, p
	}
	return release, nil
}
