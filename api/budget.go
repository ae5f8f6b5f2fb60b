package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/config"
)

// DefaultMaxInFlightBytes is the in-flight body budget when
// Options.MaxInFlightBytes is 0.
const DefaultMaxInFlightBytes = config.DefaultMaxInFlightBytes

// DefaultAppShare is the part of the budget one app may hold when
// Options.MaxInFlightBytesPerApp is 0: a quarter, so that one app whose
// clients stall (or declare large bodies and never send them) leaves three
// quarters to everyone else.
const DefaultAppShare = 4

// bodyBudget bounds the request bodies the API holds at once, overall and
// per app. Each submission reserves its body's size before reading it: the
// Content-Length, or, without one, the most the handler will read. A
// submission holds about three times its body while it is handled (the
// body, the decoded attachments, the rendered message; package compose), so
// the budget bounds the heap of the submissions in flight at about three
// times it.
//
// A request that does not fit is refused at once rather than queued: a
// waiting request would hold its connection and its unread body in the
// kernel's buffers, and clients retry 503 and 429 anyway. When the whole
// budget is full the answer is 503 (the server is busy); when the app's own
// share is full it is 429 (the app is sending too much at once), so one app
// cannot starve the others. A body larger than the budget (or the share) is
// admitted when it would be the only one in flight (of the app), so a small
// budget never refuses a message the app's limits allow.
type bodyBudget struct {
	max, perApp int64

	mu   sync.Mutex
	used int64
	apps map[string]int64 // bytes in flight per app; absent when none

	// observe reports an app's bytes in flight after each change (metrics).
	observe func(app string, bytes int64)
}

// budgetRefusal says which limit refused a reservation.
type budgetRefusal int

const (
	budgetOK       budgetRefusal = iota
	budgetFull                   // the whole budget
	budgetAppShare               // the app's share
)

func newBodyBudget(max, perApp int64) *bodyBudget {
	if max <= 0 {
		max = DefaultMaxInFlightBytes
	}
	if perApp <= 0 {
		perApp = max / DefaultAppShare
	}
	return &bodyBudget{max: max, perApp: min(perApp, max), apps: map[string]int64{},
		observe: func(string, int64) {}}
}

// reserve takes n bytes of the budget for app if they fit and returns the
// function that gives them back (safe to call more than once).
func (b *bodyBudget) reserve(app string, n int64) (release func(), why budgetRefusal) {
	n = min(max(n, 0), b.max)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return nil, budgetFull
	}
	mine := b.apps[app]
	if mine > 0 && mine+n > b.perApp {
		return nil, budgetAppShare
	}
	b.used += n
	b.apps[app] = mine + n
	b.observe(app, mine+n)
	return sync.OnceFunc(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.used -= n
		left := b.apps[app] - n
		if left == 0 {
			delete(b.apps, app)
		} else {
			b.apps[app] = left
		}
		b.observe(app, left)
	}), budgetOK
}

// inUse reports the bytes reserved overall and by app.
func (b *bodyBudget) inUse(app string) (all, mine int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.apps[app]
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
	release, why := s.budget.reserve(app.id, n)
	switch why {
	case budgetFull:
		s.metrics.BudgetRefused(app.id, "full")
		s.log.Warn("request refused: in-flight body budget exhausted", "app", app.id,
			"bytes", n, "budget", s.budget.max)
		p := problem(http.StatusServiceUnavailable, CodeQueueUnavailable, "Server busy",
			fmt.Sprintf("too many large submissions are being received at once (%d bytes in flight at most); nothing was queued, try again", s.budget.max))
		p.retryAfter = time.Second
		return nil, p
	case budgetAppShare:
		s.metrics.BudgetRefused(app.id, "app_share")
		s.log.Warn("request refused: the app's share of the in-flight body budget is exhausted", "app", app.id,
			"bytes", n, "share", s.budget.perApp)
		p := problem(http.StatusTooManyRequests, CodeRateLimited, "Too many submissions in flight",
			fmt.Sprintf("app %s is already sending %d bytes of bodies at once (at most %d); nothing was queued, try again when they are done",
				app.id, s.budget.perApp, s.budget.perApp))
		p.retryAfter = time.Second
		return nil, p
	}
	return release, nil
}

// Slow bodies.
//
// The budget is reserved before a body is read, so a client that declares
// a large body and then sends it slowly, or not at all, holds its part of
// the budget. The server's ReadTimeout (minutes, for large attachments on
// slow links) is too long to stop that. Instead, a body must keep up an
// average rate: after a grace period (connection set-up, TLS, a client
// that computes its body as it sends), at least MinBodyRate bytes a second
// on average since the request began. A client below that is cut off with
// 408 and its reservation is given back. The rate is deliberately low
// (the default is a slow mobile link's), so no honest client is refused.

// Defaults of the slow-body cut-off.
const (
	DefaultMinBodyRate   = 4 << 10 // bytes a second, on average
	DefaultBodyRateGrace = 10 * time.Second
)

// errBodyTooSlow is what a body read returns when the body falls below the
// minimum rate.
var errBodyTooSlow = errors.New("the request body arrived too slowly")

// minRateBody is a request body that must keep up an average rate. It moves
// the connection's read deadline forward as bytes arrive: the deadline for
// the next byte is when the average would fall below the rate. Deadlines of
// connections are wall-clock times, so this reads time.Now, not the
// injected clock.
type minRateBody struct {
	r     io.Reader
	rc    *http.ResponseController
	start time.Time
	rate  int64 // bytes a second
	grace time.Duration
	n     int64
	// unsupported is set when the connection cannot take deadlines (an
	// HTTP/2 stream without support, a test recorder): then the server's
	// own timeouts are all there is.
	unsupported bool
}

func (m *minRateBody) Read(p []byte) (int, error) {
	if !m.unsupported {
		deadline := m.start.Add(m.grace + time.Duration(m.n*int64(time.Second)/m.rate))
		if err := m.rc.SetReadDeadline(deadline); err != nil {
			m.unsupported = true
		}
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, errBodyTooSlow
	}
	return n, err
}

// limitedBody returns the request's body bounded to limit bytes and to the
// minimum rate.
func (s *Server) limitedBody(c *echo.Context, limit int64) io.Reader {
	body := http.MaxBytesReader(c.Response(), c.Request().Body, limit)
	if s.minBodyRate <= 0 {
		return body
	}
	return &minRateBody{r: body, rc: http.NewResponseController(c.Response()), start: time.Now(),
		rate: s.minBodyRate, grace: s.bodyRateGrace}
}

func errTooSlow(app *appPolicy, rate int64) *Problem {
	return problem(http.StatusRequestTimeout, CodeBodyTooSlow, "Request body too slow",
		fmt.Sprintf("the body of app %s's request arrived at less than %d bytes a second on average and was cut off; nothing was queued", app.id, rate))
}
