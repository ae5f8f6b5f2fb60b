// Command loadgen submits JSON messages of a given size to a running
// mailgate from many concurrent clients, as postfix-vs-mailgate.sh does
// with smtp-source for Postfix, and prints what it measured as one line of
// key=value pairs. With -batch N it sends the same messages as batches of N
// (POST /v1/messages/batch). With -sink it then waits until an smtp-sink
// started with -c has counted every accepted message, and reports the end
// to end rate too.
//
//	go run ./test/bench/loadgen -url http://127.0.0.1:8080 -token "$TOKEN" \
//	    -n 20000 -c 64 -size 2048 [-batch 100] [-sink /tmp/sink.out]
//
// It is a benchmark tool: it asserts nothing, and any answer other than
// 202 (or 200 with every result an id) is counted and printed.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "mailgate's base URL")
	tok := flag.String("token", "", "app token")
	to := flag.String("to", "ops@example.com", "recipient")
	n := flag.Int("n", 20000, "messages in all")
	c := flag.Int("c", 64, "concurrent clients")
	size := flag.Int("size", 2048, "approximate size of each JSON submission in bytes")
	batch := flag.Int("batch", 0, "send batches of this many messages (0: one message per request)")
	sink := flag.String("sink", "", "smtp-sink -c output file to watch for the deliveries")
	sinkBase := flag.Int("sink.base", 0, "messages the sink had counted before this run")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long to wait for the deliveries")
	flag.Parse()
	if *tok == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -token is required")
		os.Exit(2)
	}

	msg := map[string]any{"to": *to, "subject": "Load test", "text": ""}
	empty, _ := json.Marshal(msg)
	msg["text"] = strings.Repeat("Lorem ipsum dolor sit amet. ", (*size-len(empty))/28+1)[:max(*size-len(empty), 1)]
	one, _ := json.Marshal(msg)
	per := 1
	endpoint := *url + "/v1/messages"
	body := one
	if *batch > 0 {
		per = *batch
		items := make([]json.RawMessage, per)
		for i := range items {
			items[i] = one
		}
		body, _ = json.Marshal(map[string]any{"messages": items})
		endpoint = *url + "/v1/messages/batch"
	}
	requests := (*n + per - 1) / per

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}}
	lat := make([]time.Duration, requests)
	var accepted, refused atomic.Int64
	var mu sync.Mutex
	codes := map[string]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				t0 := time.Now()
				code, ok, err := post(client, endpoint, *tok, body, per)
				lat[i] = time.Since(t0)
				accepted.Add(int64(ok))
				refused.Add(int64(per - ok))
				if code != http.StatusAccepted && code != http.StatusOK || err != nil {
					k := strconv.Itoa(code)
					if err != nil {
						k = "error: " + err.Error()
					}
					mu.Lock()
					codes[k]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	slices.Sort(lat)
	pct := func(q float64) string {
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Round(10 * time.Microsecond).String()
	}
	out := fmt.Sprintf("accepted=%d refused=%d requests=%d seconds=%.3f accept_rate=%.0f p50=%s p99=%s max=%s",
		accepted.Load(), refused.Load(), requests, wall.Seconds(), float64(accepted.Load())/wall.Seconds(),
		pct(0.50), pct(0.99), lat[len(lat)-1].Round(10*time.Microsecond))
	if len(codes) > 0 {
		out += fmt.Sprintf(" other=%q", fmt.Sprint(codes))
	}
	if *sink != "" {
		want := *sinkBase + int(accepted.Load())
		deadline := time.Now().Add(*timeout)
		got := 0
		for time.Now().Before(deadline) {
			if got = sinkCount(*sink); got >= want {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		e2e := time.Since(start)
		out += fmt.Sprintf(" delivered=%d delivery_seconds=%.3f delivery_rate=%.0f", got-*sinkBase, e2e.Seconds(),
			float64(got-*sinkBase)/e2e.Seconds())
	}
	fmt.Println(out)
}

// post sends one request and returns its status and how many messages it
// got stored.
func post(c *http.Client, url, tok string, body []byte, per int) (int, int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, 0, err
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
		return resp.StatusCode, 1, nil
	case http.StatusOK:
		var r struct {
			Results []struct{ ID string } `json:"results"`
		}
		_ = json.Unmarshal(b, &r)
		ok := 0
		for _, x := range r.Results {
			if x.ID != "" {
				ok++
			}
		}
		return resp.StatusCode, ok, nil
	}
	return resp.StatusCode, 0, nil
}

var mesgRE = regexp.MustCompile(`mesg=(\d+)`)

// sinkCount reads the last counter smtp-sink -c wrote (its lines end in
// CR, so only the file's tail matters).
func sinkCount(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	b := make([]byte, min(st.Size(), 256))
	if _, err := f.ReadAt(b, st.Size()-int64(len(b))); err != nil && err != io.EOF {
		return 0
	}
	m := mesgRE.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return 0
	}
	v, _ := strconv.Atoi(string(m[len(m)-1][1]))
	return v
}
