package devmode_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/test/syncbuf"
	"github.com/mailgate/mailgate/test/testbin"

	"github.com/mailgate/mailgate/internal/devmode"
	"github.com/mailgate/mailgate/test/testwait"
)

// The dev install's printed curl line works: the message it sends lands in
// the outbox as an .eml file within a second or two.
func TestDevCurlLineLandsInOutbox(t *testing.T) {
	dir := t.TempDir()
	var stdout, log syncbuf.Buffer
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- devmode.Run(ctx, devmode.Options{Listen: "127.0.0.1:0", SMTPListen: "127.0.0.1:0", Dir: dir, Stdout: &stdout, Log: &log,
			Ready: func(string, string) { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev mode ended with %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("dev mode stopped: %v\n%s", err, log.String())
	case <-time.After(10 * time.Second):
		t.Fatal("dev mode did not start")
	}

	banner := stdout.String()
	if !strings.Contains(banner, "Nothing persists across restarts") {
		t.Errorf("the banner does not say nothing persists:\n%s", banner)
	}
	// Run the curl line exactly as printed, read back from the banner.
	m := regexp.MustCompile(`curl -sS (\S+/v1/messages) -H 'Authorization: Bearer (\S+)' \\\s+-H 'Content-Type: application/json' \\\s+-d '(.+)'`).
		FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no curl line in the banner:\n%s", banner)
	}
	req, err := http.NewRequest("POST", m[1], strings.NewReader(m[3]))
	if err != nil {
		t.Fatalf("the printed curl line's URL: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+m[2])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the printed curl line got %d", resp.StatusCode)
	}

	outbox := filepath.Join(dir, "outbox")
	var files []string
	testwait.UntilNil(t, 10*time.Second, func() error {
		var err error
		if files, err = filepath.Glob(filepath.Join(outbox, "*.eml")); err != nil {
			t.Fatal(err)
		}
		if len(files) != 1 {
			return fmt.Errorf("%d .eml files in %s, want 1\nlog:\n%s", len(files), outbox, log.String())
		}
		return nil
	})
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("Subject: Hello from mailgate")) || !bytes.Contains(b, []byte("It works.")) {
		t.Fatalf("captured message:\n%s", b)
	}
	// The capture server writes the file, then logs it.
	testwait.Until(t, 5*time.Second, func() bool { return strings.Contains(log.String(), "msg=captured") },
		"a log line for the captured message")

	// The SMTP line works too, run by a shell exactly as printed, with the
	// real curl: the message lands in the outbox as a second file.
	curl := testbin.Path(t, "curl", "curl")
	sm := regexp.MustCompile(`(?m)^  (printf .* \| curl -sS smtp://\S+ \\\n\s+--mail-from \S+ --mail-rcpt \S+ -T -)$`).FindStringSubmatch(banner)
	if sm == nil {
		t.Fatalf("no SMTP line in the banner:\n%s", banner)
	}
	cmd := exec.Command("bash", "-c", strings.Replace(sm[1], "curl ", curl+" ", 1))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the printed SMTP line failed: %v\n%s", err, out)
	}
	testwait.UntilNil(t, 10*time.Second, func() error {
		var err error
		if files, err = filepath.Glob(filepath.Join(outbox, "*.eml")); err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 {
			return fmt.Errorf("%d .eml files in %s, want 2\nlog:\n%s", len(files), outbox, log.String())
		}
		return nil
	})
	var smtpMail []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("Subject: Hello over SMTP")) {
			smtpMail = b
		}
	}
	if !bytes.Contains(smtpMail, []byte("It works.")) || !bytes.Contains(smtpMail, []byte("Received: from ")) {
		t.Fatalf("the message sent over SMTP was not captured as sent:\n%s", smtpMail)
	}
}
