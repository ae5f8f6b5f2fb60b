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
	"github.com/mailgate/mailgate/test/testwait"
)

// TestSubmitBodyBudget holds one submission in flight (its body arrives
// slowly) and checks that a second one that does not fit the budget is
// refused with 503 and Retry-After, before its body is read, and admitted
// once the first is done.
func TestSubmitBodyBudget(t *testing.T) {
	t.Parallel()
	s := &Server{log: slog.New(slog.DiscardHandler), now: time.Now, budget: newBodyBudget(1000, 1000)}
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
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Errorf("%s answered %d without a problem document: %v", path, resp.StatusCode, err)
		}
		return answer{resp.StatusCode, p.Code, resp.Header.Get("Retry-After")}
	}
	body := func(n int) io.Reader { return strings.NewReader(strings.Repeat(" ", n)) }

	// The first submission declares 800 bytes and sends them only when told.
	pr, pw := io.Pipe()
	first := make(chan answer, 1)
	go func() { first <- send("/v1/messages", "application/json", pr, 800) }()
	testwait.Until(t, 10*time.Second, func() bool { all, _ := s.budget.InUse("t"); return all == 800 },
		"the first submission to be admitted")

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

	go func() {
		_, err := io.Copy(pw, body(800))
		pw.CloseWithError(err) // the handler then reports err, if any, as a broken body
	}()
	if got := <-first; got.status != http.StatusBadRequest {
		t.Fatalf("first submission: %+v, want 400 for its content", got)
	}
	if got := send("/v1/messages", "application/json", body(800), 800); got.status != http.StatusBadRequest {
		t.Errorf("submission of 800 bytes after the first: %+v, want it admitted (400 for its content)", got)
	}
	if got, _ := s.budget.InUse("t"); got != 0 {
		t.Errorf("%d bytes still reserved after every request", got)
	}
}
