package api

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/apppolicy"
	"github.com/mailgate/mailgate/internal/compose"
)

func TestCheckJSONShape(t *testing.T) {
	t.Parallel()
	entries := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	for _, tc := range []struct {
		name string
		json string
		ok   bool
	}{
		{"a submission", `{"to":["a@contoso.com","b@contoso.com"],"text":"x","headers":{"X-A":"1"},"attachments":[{"filename":"f","content":""}]}`, true},
		{"1000 entries", entries(1000, `""`), true},
		{"1001 entries", entries(1001, `""`), false},
		{"1001 numbers", entries(1001, `1`), false},
		{"1001 objects", entries(1001, `{}`), false},
		{"1001 members", "{" + strings.TrimSuffix(strings.Repeat(`"k":"",`, 1001), ",") + "}", false},
		{"commas inside strings do not count", `["` + strings.Repeat(",", 5000) + `"]`, true},
		{"escaped quotes do not end a string", `["\"` + strings.Repeat(",", 5000) + `"]`, true},
		{"8 levels", strings.Repeat("[", 8) + strings.Repeat("]", 8), true},
		{"9 levels", strings.Repeat("[", 9) + strings.Repeat("]", 9), false},
		{"1000 in each of two arrays", `{"a":` + entries(1000, `""`) + `,"b":` + entries(1000, `""`) + `}`, true},
	} {
		err := checkJSONShape([]byte(tc.json))
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// A recipient list over the bound is too_many_recipients; any other
	// container validation_failed, even after a recipient list.
	for _, tc := range []struct{ json, code string }{
		{`{"to":` + entries(1001, `""`) + `}`, CodeTooManyRecipients},
		{`{"bcc":` + entries(1001, `""`) + `}`, CodeTooManyRecipients},
		{`{"cc":[],"attachments":` + entries(1001, `{}`) + `}`, CodeValidationFailed},
		{`{"to":"a","headers":{` + strings.TrimSuffix(strings.Repeat(`"k":"",`, 1001), ",") + `}}`, CodeValidationFailed},
	} {
		var p *Problem
		if err := checkJSONShape([]byte(tc.json)); !errors.As(err, &p) || p.Code != tc.code {
			t.Errorf("%.40s…: %v, want %s", tc.json, err, tc.code)
		}
	}
}

// amplificationShapes are requests within the size limit whose count of
// tiny things would cost far more than their bytes to decode.
func amplificationShapes(size int) []shape {
	json := func(prefix, item, suffix string) []byte {
		var b bytes.Buffer
		b.WriteString(prefix)
		for i := 0; b.Len() < size; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, item, i)
		}
		b.WriteString(suffix)
		return b.Bytes()
	}
	lines := func(prefix, line, suffix string) []byte {
		var b bytes.Buffer
		b.WriteString(prefix)
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, line, i)
		}
		b.WriteString(suffix)
		return b.Bytes()
	}
	const mp = "multipart/form-data; boundary=b"
	return []shape{
		{"json-empty-headers", "/v1/messages", "application/json",
			json(`{"to":"a@contoso.com","text":"x","headers":{`, `"h%d":""`, `}}`)},
		{"json-recipient-array", "/v1/messages", "application/json",
			json(`{"text":"x","to":[`, `"a%d@contoso.com"`, `]}`)},
		{"json-recipient-string", "/v1/messages", "application/json",
			json(`{"text":"x","to":"`, `a%d@contoso.com`, `"}`)},
		{"json-deep", "/v1/messages", "application/json",
			[]byte(`{"text":"x","metadata":` + strings.Repeat("[", size/2) + strings.Repeat("]", size/2) + `}`)},
		{"multipart-tiny-parts-then-large-field", "/v1/messages", mp,
			lines("", "--b\r\nContent-Disposition: form-data; name=\"metadata.k%d\"\r\n\r\n\r\n",
				"--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n"+strings.Repeat("x", size/4)+"\r\n--b--\r\n")},
		{"urlencoded-many-fields", "/v1/messages", "application/x-www-form-urlencoded",
			lines("to=a@contoso.com&text=x", "&metadata.k%d=", "")},
		{"raw-many-header-fields", "/v1/messages/raw", "message/rfc822",
			lines("From: t@contoso.com\r\nTo: a@contoso.com\r\n", "X-%d: \r\n", "\r\nbody\r\n")},
		{"raw-many-parts", "/v1/messages/raw", "message/rfc822",
			lines("From: t@contoso.com\r\nTo: a@contoso.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
				"--b\r\n\r\n%d\r\n", "--b--\r\n")},
	}
}

type shape struct {
	name, path, contentType string
	body                    []byte
}

// boundsServer is an API with one app whose limits let every shape in.
func boundsServer(t testing.TB, maxBytes int64) *echo.Echo {
	t.Helper()
	s := &Server{log: slog.New(slog.DiscardHandler), now: time.Now, budget: newBodyBudget(1<<30, 1<<30)}
	pol, err := apppolicy.Compile(apppolicy.Spec{App: "t", DefaultFrom: "t@contoso.com", MaxBytes: maxBytes, MaxRecipients: 500})
	if err != nil {
		t.Fatal(err)
	}
	app := &appPolicy{Policy: pol, id: "t", maxBytes: maxBytes}
	e := echo.NewWithConfig(echo.Config{HTTPErrorHandler: s.handleError})
	e.Use(s.recoverPanics) // a shape that got through would meet no queue
	withApp := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error { c.Set(ctxApp, app); return next(c) }
	}
	e.POST("/v1/messages", s.submit, withApp)
	e.POST("/v1/messages/raw", s.submitRaw, withApp)
	return e
}

func serve(e *echo.Echo, sh shape) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, sh.path, bytes.NewReader(sh.body))
	req.Header.Set("Content-Type", sh.contentType)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// Every amplification shape is refused with a 4xx before it is decoded,
// and five of them at once allocate little more than their own bytes.
// Not parallel: it reads the process's allocation counter, which parallel
// tests would disturb (they run only after the sequential ones).
func TestAmplificationShapesAreBounded(t *testing.T) {
	const size = 4 << 20
	e := boundsServer(t, 2*size)
	shapes := amplificationShapes(size)
	for _, sh := range shapes {
		rec := serve(e, sh)
		if rec.Code < 400 || rec.Code >= 500 {
			t.Errorf("%s: %d %s, want a 4xx refusal", sh.name, rec.Code, rec.Body)
		}
	}

	// Five at once, each shape: what they allocate together is bounded by
	// a small multiple of their bytes (the bodies themselves are read into
	// memory once, and raw messages are normalised to CRLF once more).
	for _, sh := range shapes {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { serve(e, sh) })
		}
		wg.Wait()
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		if limit := uint64(5 * (3*len(sh.body) + 1<<20)); alloc > limit {
			t.Errorf("%s: five requests of %d bytes allocated %d bytes, more than %d", sh.name, len(sh.body), alloc, limit)
		}
	}
}

// Bounded means refused only past the bound: a message just within each
// count is accepted by the checks (and reaches the queue step, which this
// server lacks, so it must not be the answer here).
func TestCountBoundsAdmitWhatIsWithin(t *testing.T) {
	t.Parallel()
	headers := map[string]string{}
	for i := range compose.MaxCustomHeaders {
		headers[fmt.Sprintf("X-H%d", i)] = "v"
	}
	in := compose.Input{From: "t@contoso.com", To: []string{"a@contoso.com"}, Text: "x", Headers: headers}
	if _, err := compose.Build(in, compose.Options{Now: time.Now()}); err != nil {
		t.Fatalf("%d extra headers refused: %v", compose.MaxCustomHeaders, err)
	}
	headers["X-One-More"] = "v"
	if _, err := compose.Build(in, compose.Options{Now: time.Now()}); err == nil {
		t.Fatalf("%d extra headers accepted", compose.MaxCustomHeaders+1)
	}
	var atts []compose.Attachment
	for i := range compose.MaxAttachments + 1 {
		atts = append(atts, compose.Attachment{Filename: fmt.Sprintf("f%d.txt", i), Content: []byte("x")})
	}
	in.Headers = nil
	in.Attachments = atts[:compose.MaxAttachments]
	if _, err := compose.Build(in, compose.Options{Now: time.Now()}); err != nil {
		t.Fatalf("%d attachments refused: %v", compose.MaxAttachments, err)
	}
	in.Attachments = atts
	if _, err := compose.Build(in, compose.Options{Now: time.Now()}); err == nil {
		t.Fatalf("%d attachments accepted", compose.MaxAttachments+1)
	}

	raw := func(fields, parts int) []byte {
		var b strings.Builder
		b.WriteString("From: t@contoso.com\r\nTo: a@contoso.com\r\nContent-Type: multipart/mixed; boundary=b\r\n")
		for i := range fields - 3 {
			fmt.Fprintf(&b, "X-%d: v\r\n", i)
		}
		b.WriteString("\r\n")
		for i := range parts {
			fmt.Fprintf(&b, "--b\r\n\r\n%d\r\n", i)
		}
		b.WriteString("--b--\r\n")
		return []byte(b.String())
	}
	opt := compose.Options{Now: time.Now(), MessageIDLocal: "x"}
	if _, err := compose.ParseRaw(raw(compose.MaxHeaderFields, compose.MaxParts), opt); err != nil {
		t.Fatalf("%d header fields and %d parts refused: %v", compose.MaxHeaderFields, compose.MaxParts, err)
	}
	if _, err := compose.ParseRaw(raw(compose.MaxHeaderFields+1, 1), opt); err == nil {
		t.Fatal("one header field too many accepted")
	}
	if _, err := compose.ParseRaw(raw(4, compose.MaxParts+1), opt); err == nil {
		t.Fatal("one part too many accepted")
	}
}

// BenchmarkAmplificationShapes reports what each hostile shape costs per
// byte of request: allocated bytes per request byte (alloc-B/req-B).
// `go test -run '^$' -bench AmplificationShapes -benchmem ./api`
func BenchmarkAmplificationShapes(b *testing.B) {
	const size = 4 << 20
	e := boundsServer(b, 2*size)
	for _, sh := range amplificationShapes(size) {
		b.Run(sh.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(sh.body)))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				if rec := serve(e, sh); rec.Code >= 500 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(sh.body)), "alloc-B/req-B")
		})
	}
}
