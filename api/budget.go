package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/bodybudget"
	"github.com/mailgate/mailgate/internal/config"
)

// DefaultMaxInFlightBytes is the in-flight body budget when
// Options.MaxInFlightBytes is 0.
const DefaultMaxInFlightBytes = config.DefaultMaxInFlightBytes

// newBodyBudget is a budget of max bytes (0: DefaultMaxInFlightBytes),
// perApp of them for one app (0: a bodybudget.DefaultAppShare-th).
func newBodyBudget(max, perApp int64) *bodybudget.Budget {
	if max <= 0 {
		max = DefaultMaxInFlightBytes
	}
	return bodybudget.New(max, perApp)
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
	release, why := s.budget.Reserve(app.id, n)
	switch why {
	case bodybudget.Full:
		s.metrics.BudgetRefused(app.id, "full")
		s.log.Warn("request refused: in-flight body budget exhausted", "app", app.id,
			"bytes", n, "budget", s.budget.Max())
		p := problem(http.StatusServiceUnavailable, CodeQueueUnavailable, "Server busy",
			fmt.Sprintf("too many large submissions are being received at once (%d bytes in flight at most); nothing was queued, try again", s.budget.Max()))
		p.retryAfter = time.Second
		return nil, p
	case bodybudget.AppShare:
		s.metrics.BudgetRefused(app.id, "app_share")
		s.log.Warn("request refused: the app's share of the in-flight body budget is exhausted", "app", app.id,
			"bytes", n, "share", s.budget.PerApp())
		p := problem(http.StatusTooManyRequests, CodeRateLimited, "Too many submissions in flight",
			fmt.Sprintf("app %s is already sending %d bytes of bodies at once (at most %d); nothing was queued, try again when they are done",
				app.id, s.budget.PerApp(), s.budget.PerApp()))
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
