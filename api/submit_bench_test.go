package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// benchSubmission is test/bench/loadgen's body: one recipient, a subject
// and about size bytes of text.
func benchSubmission(tb testing.TB, size int) []byte {
	tb.Helper()
	msg := map[string]any{"to": "ops@contoso.com", "subject": "Load test", "text": ""}
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

// BenchmarkParseJSON measures reading and decoding a typical JSON
// submission of about 2 KB: the body's checks (UTF-8, shape), the strict
// decoding and the request it gives.
func BenchmarkParseJSON(b *testing.B) {
	body := benchSubmission(b, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := parseJSON(bytes.NewReader(body), int64(len(body))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFastSubmission is the one-pass decoding alone, on the same body.
func BenchmarkFastSubmission(b *testing.B) {
	body := benchSubmission(b, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var js jsonSubmission
		if !fastSubmission(body, &js, nil) {
			b.Fatal("not the usual shape")
		}
	}
}

// BenchmarkParseJSONLines is BenchmarkParseJSON with a text of lines, as
// alerts usually are: every 60 characters a "\n" escape in the JSON.
func BenchmarkParseJSONLines(b *testing.B) {
	text := strings.Repeat(strings.Repeat("x", 59)+"\n", 34)
	body, err := json.Marshal(map[string]any{"to": "ops@contoso.com", "subject": "Load test", "text": text})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := parseJSON(bytes.NewReader(body), int64(len(body))); err != nil {
			b.Fatal(err)
		}
	}
}
