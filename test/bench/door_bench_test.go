package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/api"
	"github.com/mailgate/mailgate/internal/gateway"
)

// BenchmarkSubmitDoor measures the door's own cost of one JSON submission
// (POST /v1/messages): the API's handler chain called directly, one
// request at a time, with no HTTP client or connection in the process. The
// token check and the enqueue go to a real redis-server; the log is the
// serve command's text log, at info, written to nowhere. cpu-µs/op is this
// process's CPU time (getrusage) per submission: the handler and the Redis
// client, which is what `serve --role api` spends per message apart from
// net/http's reading and writing. B/op and allocs/op are the server side
// alone. The body is the load generator's (test/bench/loadgen): one
// recipient, a subject and about 2 KB of text.
//
// It is kept free of anything newer than the API's Options of c6c800d, so
// that the same file measures a baseline built from an older commit.
func BenchmarkSubmitDoor(b *testing.B) {
	s := newSetup(b, 1, time.Hour)
	r := s.build(b, gateway.RoleAPI, nil)
	tok := r.appToken(b)
	srv, err := api.New(api.Options{Config: s.cfg, Queue: r.g.Queue(), Tokens: r.g.Tokens(),
		Log:      slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	body := loadgenJSON(b, "ops@contoso.com", 2048)

	req, err := http.NewRequest(http.MethodPost, "http://mailgate.bench/v1/messages", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	req.RemoteAddr = "127.0.0.1:40000"
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	submit := func(b *testing.B) {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusAccepted {
			b.Fatalf("submit: %d", w.code)
		}
	}
	submit(b) // the first one loads the enqueue script
	b.ReportAllocs()
	cpu0 := doorCPU(b)
	for b.Loop() {
		submit(b)
	}
	b.ReportMetric(float64(doorCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

// loadgenJSON is test/bench/loadgen's submission: one recipient, a
// subject and text filling it up to about size bytes.
func loadgenJSON(tb testing.TB, to string, size int) []byte {
	tb.Helper()
	msg := map[string]any{"to": to, "subject": "Load test", "text": ""}
	empty, err := json.Marshal(msg)
	if err != nil {
		tb.Fatal(err)
	}
	msg["text"] = strings.Repeat("Lorem ipsum dolor sit amet. ", (size-len(empty))/28+1)[:max(size-len(empty), 1)]
	b, err := json.Marshal(msg)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// discardWriter is an http.ResponseWriter that keeps the status and
// nothing of the body.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}

// doorCPU is this process's CPU time so far, user and system.
func doorCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
