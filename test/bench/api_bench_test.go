package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/gateway"
)

// apiClient is an HTTP client for the in-process API on loopback, with
// enough idle connections that parallel clients keep theirs.
func apiClient() *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
}

// post sends one submission and returns the status and the body read.
func post(c *http.Client, url, tok, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// alertJSON is a typical JSON submission: two recipients, a subject, a
// short text, metadata.
func alertJSON(tb testing.TB) []byte {
	tb.Helper()
	b, err := json.Marshal(map[string]any{
		"to":       []string{"ops@contoso.com", "Jane <jane@contoso.com>"},
		"subject":  "Disk almost full on db1",
		"text":     loremText[:600],
		"metadata": map[string]string{"ticket": "4711"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkSubmitJSON measures POST /v1/messages with a typical JSON body
// against the API role (token check, policy, rendering, one Enqueue into a
// real redis-server), from one client (serial) and from as many clients as
// the benchmark's parallelism (parallel, 8 per CPU). Allocations include
// the HTTP client's, which run in the same process.
func BenchmarkSubmitJSON(b *testing.B) {
	s := newSetup(b, 1, time.Hour)
	r := s.build(b, gateway.RoleAPI, nil)
	r.start(b)
	tok := r.appToken(b)
	url := r.base + "/v1/messages"
	body := alertJSON(b)
	c := apiClient()

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			if code, resp, err := post(c, url, tok, "application/json", body); err != nil || code != http.StatusAccepted {
				b.Fatalf("submit: %d %s %v", code, resp, err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "submissions/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if code, resp, err := post(c, url, tok, "application/json", body); err != nil || code != http.StatusAccepted {
					b.Errorf("submit: %d %s %v", code, resp, err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "submissions/s")
	})
}

// attachmentSize is the attachment of BenchmarkSubmitLargeAttachment.
const attachmentSize = 10 << 20

// bigAttachment is attachmentSize bytes that neither compress nor look
// like text, as a PDF or a zip would.
func bigAttachment() []byte {
	b := make([]byte, attachmentSize)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// largeJSON is a submission with content as a base64 attachment.
func largeJSON(tb testing.TB, content []byte) []byte {
	tb.Helper()
	b, err := json.Marshal(map[string]any{
		"to": "ops@contoso.com", "subject": "Nightly dump", "text": "See attached.",
		"attachments": []map[string]string{{"filename": "dump.bin", "content": base64.StdEncoding.EncodeToString(content)}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// largeMultipart is the same submission as a `curl -F` form.
func largeMultipart(tb testing.TB, content []byte) (body []byte, contentType string) {
	tb.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, kv := range [][2]string{{"to", "ops@contoso.com"}, {"subject", "Nightly dump"}, {"text", "See attached."}} {
		if err := w.WriteField(kv[0], kv[1]); err != nil {
			tb.Fatal(err)
		}
	}
	fw, err := w.CreateFormFile("attachment", "dump.bin")
	if err == nil {
		_, err = fw.Write(content)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

// BenchmarkSubmitLargeAttachment measures the memory of one submission
// with a 10 MB attachment, as JSON (base64, about 13.3 MB on the wire) and
// as multipart (10 MB on the wire). B/op is everything allocated for one
// request, client side included (nothing: the body is built once);
// x-attachment is B/op over the attachment's size; peak-heap-MB is the
// highest heap (live objects and garbage not yet swept) seen while the
// requests ran one at a time, above the heap before the first (which holds
// the client's prepared bodies). Redis is
// emptied between requests (outside the timer), since each stored message
// is about 14 MB.
func BenchmarkSubmitLargeAttachment(b *testing.B) {
	s := newSetup(b, 1, time.Hour)
	r := s.build(b, gateway.RoleAPI, nil)
	r.start(b)
	tok := r.appToken(b)
	url := r.base + "/v1/messages"
	c := apiClient()
	rdb := s.redis.Client()
	content := bigAttachment()
	mp, mpType := largeMultipart(b, content)
	for _, k := range []struct {
		name, contentType string
		body              []byte
	}{
		{"json-base64", "application/json", largeJSON(b, content)},
		{"multipart", mpType, mp},
	} {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(attachmentSize)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			baseline := heapNow()
			heap := startHeapSampler(time.Millisecond)
			var stopped time.Duration // time spent emptying Redis, not counted
			start := time.Now()
			for b.Loop() {
				if code, resp, err := post(c, url, tok, k.contentType, k.body); err != nil || code != http.StatusAccepted {
					b.Fatalf("submit: %d %s %v", code, resp, err)
				}
				b.StopTimer()
				t := time.Now()
				if err := rdb.FlushDB(b.Context()).Err(); err != nil {
					b.Fatal(err)
				}
				stopped += time.Since(t)
				b.StartTimer()
			}
			elapsed := time.Since(start) - stopped
			peak := heap.Stop() - baseline
			runtime.ReadMemStats(&after)
			perOp := float64(after.TotalAlloc-before.TotalAlloc) / float64(b.N)
			b.ReportMetric(perOp/attachmentSize, "x-attachment")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "submissions/s")
			b.Logf("N=%d: %.1f MB allocated per request (request body %.1f MB), peak live heap %.1f MB",
				b.N, perOp/(1<<20), float64(len(k.body))/(1<<20), float64(peak)/(1<<20))
		})
	}
}

// BenchmarkSubmitBatch measures POST /v1/messages/batch with batches of
// 100 typical JSON messages against the API role, from 8 clients per CPU,
// and, in the same run and against the same server, the same messages
// sent one per request (POST /v1/messages) from as many clients: its
// figures are the baseline of the x-single ratios. msgs/s counts messages,
// not requests; allocations are per request. cpu-µs/msg is this process's
// CPU time (gateway and HTTP clients, getrusage) per message, and
// redis-cpu-µs/msg redis-server's: on a machine shared with other work
// they move far less than msgs/s does. redis-rtts/msg counts the gateway's
// commands and pipelines (token check and enqueue).
func BenchmarkSubmitBatch(b *testing.B) {
	s := newSetup(b, 1, time.Hour)
	rt := &roundTrips{}
	r := s.buildWith(b, gateway.RoleAPI, nil, rt)
	r.start(b)
	tok := r.appToken(b)
	one := alertJSON(b)
	const per = 100
	items := make([]json.RawMessage, per)
	for i := range items {
		items[i] = one
	}
	batch, err := json.Marshal(map[string]any{"messages": items})
	if err != nil {
		b.Fatal(err)
	}
	c := apiClient()
	rdb := s.redis.Client()
	type figures struct{ rate, cpu, redisCPU float64 }
	measure := func(b *testing.B, url string, body []byte, n int) figures {
		b.Helper()
		b.SetParallelism(8)
		rt.reset()
		cpu0, rcpu0 := processCPU(b), redisCPU(b, rdb)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				code, resp, err := post(c, url, tok, "application/json", body)
				if err != nil || (code != http.StatusAccepted && code != http.StatusOK) {
					b.Errorf("submit: %d %s %v", code, resp, err)
					return
				}
				if code == http.StatusOK && bytes.Contains(resp, []byte(`"error"`)) {
					b.Errorf("a message of the batch was refused: %s", resp)
					return
				}
			}
		})
		msgs := float64(b.N * n)
		f := figures{rate: msgs / time.Since(start).Seconds(),
			cpu:      float64((processCPU(b) - cpu0).Microseconds()) / msgs,
			redisCPU: float64((redisCPU(b, rdb) - rcpu0).Microseconds()) / msgs}
		trips, byCmd := rt.snapshot()
		b.StopTimer()
		b.ReportMetric(f.rate, "msgs/s")
		b.ReportMetric(f.cpu, "cpu-µs/msg")
		b.ReportMetric(f.redisCPU, "redis-cpu-µs/msg")
		b.ReportMetric(float64(trips)/msgs, "redis-rtts/msg")
		b.Logf("N=%d: round trips by command: %v", b.N, byCmd)
		if err := rdb.FlushDB(b.Context()).Err(); err != nil { // keep Redis's memory flat between rounds
			b.Fatal(err)
		}
		return f
	}
	var single figures
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		single = measure(b, r.base+"/v1/messages", one, 1)
	})
	b.Run("batch100", func(b *testing.B) {
		b.ReportAllocs()
		f := measure(b, r.base+"/v1/messages/batch", batch, per)
		if single.rate > 0 {
			b.ReportMetric(f.rate/single.rate, "x-single-rate")
			b.ReportMetric(single.cpu/f.cpu, "x-single-cpu")
		}
	})
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
