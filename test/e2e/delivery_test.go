package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/exosim"
)

// parsed is a delivered message read back with go-message.
type parsed struct {
	header mail.Header
	text   string
	html   string
	files  map[string][]byte
}

func parseDelivered(t *testing.T, data []byte) parsed {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("delivered message does not parse: %v\n%s", err, data)
	}
	p := parsed{header: mr.Header, files: map[string][]byte{}}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("delivered message part: %v", err)
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			t.Fatalf("delivered message part: %v", err)
		}
		switch h := part.Header.(type) {
		case *mail.InlineHeader:
			ct, _, err := h.ContentType()
			if err != nil {
				t.Fatalf("delivered part's Content-Type: %v", err)
			}
			switch ct {
			case "text/plain":
				p.text = string(b)
			case "text/html":
				p.html = string(b)
			default:
				p.files[strings.Trim(h.Get("Content-Id"), "<>")] = b
			}
		case *mail.AttachmentHeader:
			name, err := h.Filename()
			if err != nil {
				t.Fatalf("delivered attachment's file name: %v", err)
			}
			p.files[name] = b
		}
	}
	return p
}

func rawHeaderNames(data []byte) []string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	var names []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		names = append(names, strings.ToLower(name))
	}
	return names
}

// One test per submission style: what arrives at Exchange is the message the
// app described, Bcc recipients get it without a Bcc header, and the status
// API ends at sent with the server's reply.
func TestSubmitEachStyleIsDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	pdf := bytes.Repeat([]byte("%PDF-1.7 \x00\x01\x02\xff"), 300)

	t.Run("json", func(t *testing.T) {
		id := e.submitJSON(tok, map[string]any{
			"to": []string{"ops@contoso.com", "Jane Doe <jane@contoso.com>"}, "cc": "cc@contoso.com",
			"bcc": "audit@contoso.com", "subject": "Disk almost full — 95 %", "text": "Disk /var at 95%.\n",
			"html": "<p>Disk <b>/var</b> at 95%.</p>", "headers": map[string]string{"X-Ticket": "4711"},
			"attachments": []map[string]string{{"filename": "report.pdf", "content_type": "application/pdf",
				"content": base64.StdEncoding.EncodeToString(pdf)}},
			"metadata": map[string]string{"ticket": "4711"},
		}, nil)
		st := e.waitStatus(tok, id, "sent", 10*time.Second)
		msg := findByMessageID(t, e.sim, st["message_id"].(string))
		slices.Sort(msg.Rcpt)
		if want := []string{"audit@contoso.com", "cc@contoso.com", "jane@contoso.com", "ops@contoso.com"}; !slices.Equal(msg.Rcpt, want) {
			t.Errorf("envelope recipients %v, want %v", msg.Rcpt, want)
		}
		if msg.From != "alerts@alerts.contoso.com" || msg.AuthUser != relay {
			t.Errorf("MAIL FROM %q as %q", msg.From, msg.AuthUser)
		}
		if slices.Contains(rawHeaderNames(msg.Data), "bcc") || bytes.Contains(msg.Data, []byte("audit@contoso.com")) {
			t.Errorf("the Bcc recipient is visible in the delivered message:\n%s", msg.Data)
		}
		p := parseDelivered(t, msg.Data)
		subj, err := p.header.Subject()
		if err != nil {
			t.Fatalf("Subject: %v", err)
		}
		from, err := p.header.AddressList("From")
		if err != nil {
			t.Fatalf("From: %v", err)
		}
		if subj != "Disk almost full — 95 %" || len(from) != 1 || from[0].Address != "alerts@alerts.contoso.com" || from[0].Name != "Alerts" {
			t.Errorf("subject %q from %v", subj, from)
		}
		if p.header.Get("X-Ticket") != "4711" || !strings.Contains(p.text, "Disk /var at 95%.") || !strings.Contains(p.html, "<b>/var</b>") {
			t.Errorf("header/text/html wrong: %q %q %q", p.header.Get("X-Ticket"), p.text, p.html)
		}
		if !bytes.Equal(p.files["report.pdf"], pdf) {
			t.Errorf("attachment differs: %d bytes, want %d", len(p.files["report.pdf"]), len(pdf))
		}
		if st["attempts"].(float64) != 1 || st["route"] != "m365" || !slices.Equal(events(st), []string{"queued", "sent"}) {
			t.Errorf("status %v", st)
		}
		lr, _ := st["last_response"].(map[string]any)
		if lr["code"].(float64) != 250 {
			t.Errorf("last_response %v", lr)
		}
		if md, _ := st["metadata"].(map[string]any); md["ticket"] != "4711" {
			t.Errorf("metadata %v", st["metadata"])
		}
	})

	t.Run("multipart form", func(t *testing.T) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for _, kv := range [][2]string{{"to", "ops@contoso.com"}, {"to", "dev@contoso.com"},
			{"bcc", "audit@contoso.com"}, {"subject", "Nightly report"}, {"text", "See attached."}} {
			if err := w.WriteField(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		fw, err := w.CreateFormFile("attachment", "report.pdf")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(pdf); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r := e.do("POST", "/v1/messages", w.FormDataContentType(), "Basic "+base64.StdEncoding.EncodeToString([]byte("curl:"+tok)), buf.Bytes(), nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("%d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		st := e.waitStatus(tok, id, "sent", 10*time.Second)
		msg := findByMessageID(t, e.sim, st["message_id"].(string))
		p := parseDelivered(t, msg.Data)
		if !bytes.Equal(p.files["report.pdf"], pdf) || !strings.Contains(p.text, "See attached.") {
			t.Errorf("attachment %d bytes, text %q", len(p.files["report.pdf"]), p.text)
		}
		if len(msg.Rcpt) != 3 || slices.Contains(rawHeaderNames(msg.Data), "bcc") {
			t.Errorf("rcpt %v, headers %v", msg.Rcpt, rawHeaderNames(msg.Data))
		}
	})

	t.Run("text/plain one-liner", func(t *testing.T) {
		r := e.do("POST", "/v1/messages?to=ops@contoso.com&to=dev@contoso.com", "text/plain", tok,
			[]byte("backup finished in 42s\n"), map[string]string{"Subject": "backup ok"})
		if r.status != http.StatusAccepted {
			t.Fatalf("%d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		st := e.waitStatus(tok, id, "sent", 10*time.Second)
		msg := findByMessageID(t, e.sim, st["message_id"].(string))
		p := parseDelivered(t, msg.Data)
		subj, err := p.header.Subject()
		if err != nil {
			t.Fatalf("Subject: %v", err)
		}
		if subj != "backup ok" || !strings.Contains(p.text, "backup finished in 42s") || len(msg.Rcpt) != 2 {
			t.Errorf("subject %q text %q rcpt %v", subj, p.text, msg.Rcpt)
		}
	})

	t.Run("raw MIME", func(t *testing.T) {
		body := "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nraw text body\r\n" +
			"--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(pdf[:90]) + "\r\n--b1--\r\n"
		raw := "From: Helpdesk <alerts@alerts.contoso.com>\r\nTo: ops@contoso.com\r\nBcc: audit@contoso.com\r\n" +
			"Subject: raw message\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" + body
		r := e.do("POST", "/v1/messages/raw", "message/rfc822", tok, []byte(raw), nil)
		if r.status != http.StatusAccepted {
			t.Fatalf("%d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		st := e.waitStatus(tok, id, "sent", 10*time.Second)
		msg := findByMessageID(t, e.sim, st["message_id"].(string))
		_, gotBody, _ := bytes.Cut(msg.Data, []byte("\r\n\r\n"))
		if string(gotBody) != body {
			t.Errorf("the raw body was changed on the way:\n got %q\nwant %q", gotBody, body)
		}
		names := rawHeaderNames(msg.Data)
		if slices.Contains(names, "bcc") || !slices.Contains(names, "message-id") || !slices.Contains(names, "date") {
			t.Errorf("headers %v: want no Bcc, a Message-ID and a Date", names)
		}
		slices.Sort(msg.Rcpt)
		if !slices.Equal(msg.Rcpt, []string{"audit@contoso.com", "ops@contoso.com"}) {
			t.Errorf("rcpt %v", msg.Rcpt)
		}
	})
}

func findByMessageID(t *testing.T, sim *exosim.Sim, messageID string) exosim.Message {
	t.Helper()
	for _, m := range sim.Messages() {
		if bytes.Contains(m.Data, []byte("<"+messageID+">")) {
			return m
		}
	}
	t.Fatalf("no delivered message has Message-ID <%s> (%d delivered)", messageID, len(sim.Messages()))
	return exosim.Message{}
}

// The bytes a worker sends are exactly the bytes the API stored: nothing is
// re-rendered on the way (the API and the worker run as separate roles).
func TestStoredBytesAreDeliveredUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "exact", "text": "bytes\n",
		"attachments": []map[string]string{{"filename": "a.bin", "content": base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 3, 255})}}}, nil)
	stored, err := e.redis.Client().HGet(context.Background(), "mailgate:{m365}:msg:"+id, "body").Bytes()
	if err != nil || len(stored) == 0 {
		t.Fatalf("stored body: %v", err)
	}
	e.start(gateway.RoleWorker)
	e.waitStatus(tok, id, "sent", 10*time.Second)
	got := e.sim.Messages()
	if len(got) != 1 || !bytes.Equal(got[0].Data, stored) {
		t.Fatalf("delivered bytes differ from stored bytes:\nstored %q\ngot    %q", stored, got)
	}
}

// A 4xx is retried after a backoff and the message then goes through; both
// attempts are in the events.
func TestTemporaryFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.sim.Script(exosim.Reply{Stage: exosim.StageData, Code: 451, Enhanced: "4.7.500", Text: "Server busy. Please try again later"})
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "retry me", "text": "x"}, nil)
	st := e.waitStatus(tok, id, "sent", 10*time.Second)
	if got := events(st); !slices.Equal(got, []string{"queued", "deferred", "sent"}) {
		t.Fatalf("events %v", got)
	}
	if st["attempts"].(float64) != 2 {
		t.Fatalf("attempts %v", st["attempts"])
	}
	evs := st["events"].([]any)
	if d := evs[1].(map[string]any)["detail"].(string); !strings.Contains(d, "451 4.7.500") {
		t.Fatalf("deferred event detail %q lacks the server's reply", d)
	}
	if n := len(e.sim.Messages()); n != 1 {
		t.Fatalf("%d messages delivered, want 1", n)
	}
}

// A 5xx fails the message at once, with the server's reply, and is never
// retried.
func TestPermanentFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.sim.Script(exosim.Reply{Stage: exosim.StageData, Code: 554, Enhanced: "5.6.0", Text: "Corrupt message content"})
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "doomed", "text": "x"}, nil)
	st := e.waitStatus(tok, id, "failed", 10*time.Second)
	lr := st["last_response"].(map[string]any)
	if lr["code"].(float64) != 554 || lr["enhanced_code"] != "5.6.0" || lr["text"] != "Corrupt message content" {
		t.Fatalf("last_response %v", lr)
	}
	if st["attempts"].(float64) != 1 || !slices.Equal(events(st), []string{"queued", "failed"}) {
		t.Fatalf("status %v", st)
	}
	d, err := e.redis.Client().ZCard(context.Background(), "mailgate:{m365}:failed").Result()
	if err != nil {
		t.Fatal(err)
	}
	if d != 1 || len(e.sim.Messages()) != 0 {
		t.Fatalf("failed set %d, delivered %d", d, len(e.sim.Messages()))
	}
}

// A recipient refused at RCPT is recorded; the others still get the message.
func TestRecipientRefusedAtRCPT(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.sim.Script(exosim.Reply{Stage: exosim.StageRcpt, Code: 550, Enhanced: "5.1.10",
		Text: "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"})
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": []string{"gone@contoso.com", "ops@contoso.com"}, "subject": "s", "text": "x"}, nil)
	st := e.waitStatus(tok, id, "sent", 10*time.Second)
	evs := st["events"].([]any)
	detail := evs[len(evs)-1].(map[string]any)["detail"].(string)
	if !strings.Contains(detail, "refused gone@contoso.com: 550 5.1.10") || !strings.Contains(detail, "accepted for ops@contoso.com") {
		t.Fatalf("detail %q", detail)
	}
	msgs := e.sim.Messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].Rcpt, []string{"ops@contoso.com"}) {
		t.Fatalf("delivered %+v", msgs)
	}
}

// A worker that takes a message and dies before acknowledging it loses
// nothing: after the visibility timeout another worker delivers it.
func TestMessageOfDeadWorkerIsTakenOver(t *testing.T) {
	t.Parallel()
	// Live workers keep a long lease (extended while they deliver); only the
	// dead worker's short lease decides when the takeover happens.
	e := newEnv(t, func(c *config.Config) { c.Delivery.VisibilityTimeout = 10 * time.Second })
	e.start(gateway.RoleAPI)
	tok := e.token("monitoring")
	id := e.submitJSON(tok, map[string]any{"to": "ops@contoso.com", "subject": "survivor", "text": "x"}, nil)

	// The dying worker: it takes the message exactly as a worker does, then
	// is gone — no acknowledgment, no hand-back.
	q := queue.New(e.redis.Client(), queue.Options{})
	job, err := q.Claim(context.Background(), "m365", time.Second)
	if err != nil || job == nil || job.ID != id {
		t.Fatalf("claim: %v %v", job, err)
	}
	e.start(gateway.RoleWorker)
	st := e.waitStatus(tok, id, "sent", 15*time.Second)
	if n := len(e.sim.Messages()); n != 1 {
		t.Fatalf("%d deliveries, want exactly 1", n)
	}
	evs := events(st)
	if !slices.Equal(evs, []string{"queued", "deferred", "sent"}) {
		t.Fatalf("events %v: want the takeover recorded", evs)
	}
	// The dead worker's late acknowledgment must not overwrite the outcome.
	if err := q.Complete(context.Background(), job, queue.Outcome{Status: queue.StatusFailed, Attempted: true}); err == nil {
		t.Fatal("the dead worker's lease was still honoured")
	}
	if st := e.status(tok, id); st["status"] != "sent" {
		t.Fatalf("status after the late ack: %v", st["status"])
	}
}

// The same Idempotency-Key twice gives the same id and one delivery; another
// app's identical key is its own.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(gateway.RoleAll)
	tok := e.token("monitoring")
	body := map[string]any{"to": "ops@contoso.com", "subject": "once", "text": "x"}
	h := map[string]string{"Idempotency-Key": "alert-4711"}
	id1 := e.submitJSON(tok, body, h)
	id2 := e.submitJSON(tok, body, h)
	if id1 != id2 {
		t.Fatalf("ids %s and %s for one Idempotency-Key", id1, id2)
	}
	e.waitStatus(tok, id1, "sent", 10*time.Second)
	other := e.submitJSON(e.token("billing"), map[string]any{"to": "ops@contoso.com", "text": "x"}, h)
	if other == id1 {
		t.Fatal("another app's key collided")
	}
	e.waitStatus(e.token("billing"), other, "sent", 10*time.Second)
	// Both messages are finished; had the repeat been queued, it would be
	// waiting or delivered by now as well.
	if n := len(e.sim.Messages()); n != 2 {
		t.Fatalf("%d deliveries, want 2 (one per app)", n)
	}
	d, err := queue.New(e.redis.Client(), queue.Options{}).Depth(context.Background(), "m365")
	if err != nil {
		t.Fatal(err)
	}
	if d.Ready != 0 || d.InFlight != 0 {
		t.Fatalf("depth %+v", d)
	}
}
