package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/apppolicy"
)

func TestBodyBudgetReserve(t *testing.T) {
	t.Parallel()
	b := newBodyBudget(100)
	r1, ok := b.reserve(60)
	if !ok {
		t.Fatal("60 of 100 refused")
	}
	if _, ok := b.reserve(41); ok {
		t.Fatal("41 more admitted over 100")
	}
	r2, ok := b.reserve(40)
	if !ok {
		t.Fatal("40 more refused though they fit")
	}
	r1()
	r1() // a second release gives nothing back twice
	if _, ok := b.reserve(1000); ok {
		t.Fatal("a body larger than the budget admitted while another is in flight")
	}
	r2()
	big, ok := b.reserve(1000)
	if !ok {
		t.Fatal("a body larger than the budget refused though it would be alone")
	}
	big()
	if got := b.used.Load(); got != 0 {
		t.Fatalf("%d bytes still reserved after every release", got)
	}
	if got := newBodyBudget(0).max; got != DefaultMaxInFlightBytes {
		t.Fatalf("budget 0 means %d, want the default", got)
	}
}

// TestSubmitBodyBudget holds one submission in flight (its body arrives
// slowly) and checks that a second one that does not fit the budget is
// refused with 503 and Retry-After, before its body is read, and admitted
// once the first is done.
func TestSubmitBodyBudget(t *testing.T) {
	t.Parallel()
	s := &Server{log: slog.New(slog.DiscardHandler), now: time.Now, budget: newBodyBudget(1000)}
	pol, err := apppolicy.Compile(apppolicy.Spec{App: "t", DefaultFrom: "t@contoso.com", MaxBytes: 10_000, MaxRecipients: 10})
	if err != nil {
		t.Fatal(err)
	}
	app := &appPolicy{Policy: pol, id: "t", maxBytes: 10_000}
	e := echo.NewWithConfig(echo.Config{HTTPErrorHandler: s.handleError})
	withApp := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error { c.Set(ctxApp, app); return next(c) }
	}
	e.POST("/v1/messages", s.submit, withApp)
	e.POST("/v1/messages/raw", s.submitRaw, withApp)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	type answer struct {
		status     int
		code       string
		retryAfter string
	}
	send := func(path, contentType string, body io.Reader, length int64) answer {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		req.Header.Set("Content-Type", contentType)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p Problem
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return answer{resp.StatusCode, p.Code, resp.Header.Get("Retry-After")}
	}
	body := func(n int) io.Reader { return strings.NewReader(strings.Repeat(" ", n)) }

	// The first submission declares 800 bytes and sends them only when told.
	pr, pw := io.Pipe()
	first := make(chan answer, 1)
	go func() { first <- send("/v1/messages", "application/json", pr, 800) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.budget.used.Load() != 800 {
		if time.Now().After(deadline) {
			t.Fatal("the first submission was never admitted")
		}
		time.Sleep(time.Millisecond)
	}

	busy := answer{http.StatusServiceUnavailable, CodeQueueUnavailable, "1"}
	if got := send("/v1/messages", "application/json", body(800), 800); got != busy {
		t.Errorf("second submission of 800 bytes: %+v, want %+v", got, busy)
	}
	// Without Content-Length a body counts as the most that would be read.
	if got := send("/v1/messages", "application/json", body(10), -1); got != busy {
		t.Errorf("submission without Content-Length: %+v, want %+v", got, busy)
	}
	if got := send("/v1/messages/raw", "message/rfc822", body(800), 800); got != busy {
		t.Errorf("raw submission of 800 bytes: %+v, want %+v", got, busy)
	}
	// One that fits is admitted (and then refused for its content).
	if got := send("/v1/messages", "application/json", body(200), 200); got.status != http.StatusBadRequest {
		t.Errorf("submission of 200 bytes: %+v, want 400 for its content", got)
	}
	// Larger than the app may send: 413 without touching the budget.
	if got := send("/v1/messages/raw", "message/rfc822", body(10_001), 10_001); got.status != http.StatusRequestEntityTooLarge || got.code != CodeTooLarge {
		t.Errorf("raw submission over the app's limit: %+v, want 413", got)
	}

	go func() { _, _ = io.Copy(pw, body(800)); pw.Close() }()
	if got := <-first; got.status != http.StatusBadRequest {
		t.Fatalf("first submission: %+v, want 400 for its content", got)
	}
	if got := send("/v1/messages", "application/json", body(800), 800); got.status != http.StatusBadRequest {
		t.Errorf("submission of 800 bytes after the first: %+v, want it admitted (400 for its content)", got)
	}
	if got := s.budget.used.Load(); got != 0 {
		t.Errorf("%d bytes still reserved after every request", got)
	}
}
