package sendmail

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newSpool(t *testing.T) Spool {
	return Spool{Dir: filepath.Join(t.TempDir(), "spool"), Now: func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) }}
}

func put(t *testing.T, s Spool, key string) {
	t.Helper()
	if _, err := s.Put(Entry{Key: key, To: []string{"a@contoso.com"}, Reason: "test"}, []byte("Subject: "+key+"\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
}

func spooled(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && e.Name() != ".lock" {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestSpoolPutIsPrivateAndWhole(t *testing.T) {
	t.Parallel()
	s := newSpool(t)
	put(t, s, "k1")
	files := spooled(t, s.Dir)
	if len(files) != 1 || files[0] != "k1.msg" {
		t.Fatalf("spool holds %q, want only k1.msg (no temporary file left)", files)
	}
	info, err := os.Stat(filepath.Join(s.Dir, "k1.msg"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: a spooled message is private", info.Mode())
	}
	e, msg, err := readEntry(filepath.Join(s.Dir, "k1.msg"))
	if err != nil || e.Key != "k1" || e.To[0] != "a@contoso.com" || !e.SpooledAt.Equal(s.Now()) || string(msg) != "Subject: k1\r\n\r\nx\r\n" {
		t.Errorf("read back %+v %q %v", e, msg, err)
	}
}

func TestFlushOutcomes(t *testing.T) {
	t.Parallel()
	s := newSpool(t)
	for _, k := range []string{"ok", "bad", "later"} {
		put(t, s, k)
		// Distinct times, so the order is the spool order.
		tm := time.Date(2026, 1, 1, 0, 0, len(spooled(t, s.Dir)), 0, time.UTC)
		if err := os.Chtimes(filepath.Join(s.Dir, k+".msg"), tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	answers := map[string]int{"ok": http.StatusAccepted, "bad": http.StatusForbidden, "later": http.StatusServiceUnavailable}
	var sent []string
	var reports []string
	send := func(_ context.Context, e Entry, msg []byte) Result {
		sent = append(sent, e.Key)
		return Result{Status: answers[e.Key], Reason: "answer for " + e.Key}
	}
	r, err := s.Flush(context.Background(), send, func(file, outcome string) { reports = append(reports, file+" "+outcome) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sent, ",") != "ok,bad,later" || r != (FlushReport{Sent: 1, Failed: 1, Kept: 1}) {
		t.Fatalf("sent %q, report %+v", sent, r)
	}
	if got := spooled(t, s.Dir); len(got) != 1 || got[0] != "later.msg" {
		t.Errorf("spool holds %q, want later.msg only", got)
	}
	reason, err := os.ReadFile(filepath.Join(s.Dir, FailedDir, "bad.reason"))
	if err != nil || !strings.Contains(string(reason), "answer for bad") {
		t.Errorf("failed/bad.reason: %q, %v", reason, err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, FailedDir, "bad.msg")); err != nil {
		t.Errorf("refused message not kept in failed/: %v", err)
	}
	if len(reports) != 2 {
		t.Errorf("reports %q, want one each for bad and later", reports)
	}

	// A temporary failure stops the run: what follows waits for the next.
	answers["later"] = http.StatusAccepted
	r, err = s.Flush(context.Background(), send, func(string, string) {})
	if err != nil || r != (FlushReport{Sent: 1}) || len(spooled(t, s.Dir)) != 0 {
		t.Errorf("second flush: %+v, %v, left %q", r, err, spooled(t, s.Dir))
	}
}

// A second flush while the first is sending finds the lock held and sends
// nothing.
func TestFlushConcurrent(t *testing.T) {
	t.Parallel()
	s := newSpool(t)
	for _, k := range []string{"a", "b", "c"} {
		put(t, s, k)
	}
	var mu sync.Mutex
	count := map[string]int{}
	firstSending := make(chan struct{})
	secondDone := make(chan struct{})
	var once sync.Once
	send := func(_ context.Context, e Entry, _ []byte) Result {
		mu.Lock()
		count[e.Key]++
		mu.Unlock()
		once.Do(func() { close(firstSending); <-secondDone })
		return Result{Status: http.StatusAccepted}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := s.Flush(context.Background(), send, func(string, string) {}); err != nil {
			t.Errorf("first flush: %v", err)
		}
	}()
	<-firstSending
	_, err := s.Flush(context.Background(), send, func(string, string) {})
	if err != ErrFlushRunning {
		t.Errorf("second flush: %v, want ErrFlushRunning", err)
	}
	close(secondDone)
	wg.Wait()
	for _, k := range []string{"a", "b", "c"} {
		if count[k] != 1 {
			t.Errorf("%s sent %d times, want once: %v", k, count[k], count)
		}
	}
}

func TestFlushNoSpoolYet(t *testing.T) {
	t.Parallel()
	s := newSpool(t)
	r, err := s.Flush(context.Background(), func(context.Context, Entry, []byte) Result {
		t.Error("sent from an empty spool")
		return Result{}
	}, func(string, string) {})
	if err != nil || r != (FlushReport{}) {
		t.Errorf("%+v, %v", r, err)
	}
}

func TestFlushRemovesAbandonedTempFiles(t *testing.T) {
	t.Parallel()
	s := newSpool(t)
	put(t, s, "k")
	old, fresh := filepath.Join(s.Dir, ".tmp-old"), filepath.Join(s.Dir, ".tmp-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := s.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fresh, s.Now(), s.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := s.Flush(context.Background(), func(context.Context, Entry, []byte) Result {
		return Result{Status: http.StatusAccepted}
	}, func(string, string) {})
	if err != nil || r != (FlushReport{Sent: 1}) {
		t.Fatalf("%+v, %v", r, err)
	}
	if got := spooled(t, s.Dir); len(got) != 1 || got[0] != ".tmp-fresh" {
		t.Errorf("spool holds %q, want only the fresh temporary file (a write in progress)", got)
	}
}
