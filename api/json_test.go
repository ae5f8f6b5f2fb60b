package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailgate/mailgate/internal/queue"
)

// Bodies of the usual shape, which fastSubmission reads itself.
var fastShapes = []string{
	`{}`,
	` {"to":"ops@contoso.com","subject":"Disk full","text":"db1 is at 95%"} `,
	`{"from":"Alerts <alerts@contoso.com>","to":["ops@contoso.com","Jane <jane@contoso.com>"],"cc":[],"bcc":"x@contoso.com, y@contoso.com",` +
		`"reply_to":"r@contoso.com","subject":"S","text":"t","html":"<p>h</p>","headers":{"X-Ticket":"4711","X-Ticket":"4712"},` +
		`"metadata":{},"template":"alert","send_at":"2026-12-01T10:00:00Z"}`,
	"{\n\t\"to\" : \"a@contoso.com\" ,\r\n \"text\" : \"line 1\\nline 2 \\\"quoted\\\" \\u00e9\\ud83d\\ude00 \\/\"\n}",
	`{"to":"","text":"\u0000"}`,
	`{"to":"\"Doe, Jane\" <jane@contoso.com>, ops@contoso.com","text":"x"}`,
	`{"headers":{"a\"b":"c\\d"},"metadata":{"k":"v","k":"w"}}`,
	`{"text":"\b\f\n\r\t\"\\\/ \\n \u0041\n","subject":"a\\","html":"\\\\"}`,
	`{"text":"\ud800 \udc00\ud83d \u00e9\n"}`,
}

// Bodies fastSubmission leaves to encoding/json: each has something
// outside the usual shape, valid or not.
var slowShapes = []string{
	`{"to":"a@contoso.com","attachments":[{"filename":"a.txt","content":"YQ=="}]}`,
	`{"to":"a@contoso.com","data":{"x":1}}`,
	`{"to":null}`, `{"subject":null}`, `{"headers":null}`, `{"text":1}`, `{"text":true}`,
	`{"TO":"a@contoso.com"}`, `{"t\u006f":"a@contoso.com"}`, `{"to":"a@contoso.com","to":"b@contoso.com"}`,
	`{"headers":{"a":"b"},"headers":{"c":"d"}}`, `{"unknown":"x"}`, `{"idempotency_key":"k"}`,
	"{\"text\":\"a\tb\"}", `{"text":"a"} x`, `{"text":"a"}{}`, `{"text":"a",}`, `{"text":"a"`, `{"text" "a"}`,
	`{"to":["a@contoso.com",]}`, `{"to":[1]}`, `{"headers":{"a":1}}`, `{"text":"\x"}`, `{"text":"\u12"}`, `[]`, `"x"`, ``,
	`{"text":"\'"}`, `{"text":"\n\a"}`,
}

// TestFastSubmissionMatchesEncodingJSON holds fastSubmission to what
// encoding/json decodes from the same bodies, and checks that it reads the
// usual shape itself and leaves the rest alone.
func TestFastSubmissionMatchesEncodingJSON(t *testing.T) {
	for _, raw := range fastShapes {
		if !fastSubmission([]byte(raw), new(jsonSubmission), nil) {
			t.Errorf("not read by the fast path: %s", raw)
		}
		compareWithEncodingJSON(t, []byte(raw))
	}
	for _, raw := range slowShapes {
		if fastSubmission([]byte(raw), new(jsonSubmission), nil) {
			t.Errorf("read by the fast path: %s", raw)
		}
	}
	key := ""
	if !fastSubmission([]byte(`{"idempotency_key":"k1","to":"a@contoso.com"}`), new(jsonSubmission), &key) || key != "k1" {
		t.Errorf("batch item: fast path not taken or key %q", key)
	}
	compareWithEncodingJSON(t, []byte(`{"idempotency_key":"k\u0031","to":"a@contoso.com"}`))
}

// FuzzFastSubmissionMatchesEncodingJSON: whatever fastSubmission reads
// decodes to the same submission, and batch item, with encoding/json.
func FuzzFastSubmissionMatchesEncodingJSON(f *testing.F) {
	for _, s := range append(append([]string{}, fastShapes...), slowShapes...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !utf8.Valid(raw) || checkJSONShape(raw) != nil {
			return // refused before decoding
		}
		compareWithEncodingJSON(t, raw)
	})
}

func compareWithEncodingJSON(t *testing.T, raw []byte) {
	t.Helper()
	var fast jsonSubmission
	if fastSubmission(raw, &fast, nil) {
		var slow jsonSubmission
		if err := decodeStrict(raw, &slow); err != nil {
			t.Fatalf("fast path read %q, encoding/json refuses it: %v", raw, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast path     %#v\nencoding/json %#v", raw, fast, slow)
		}
	}
	var fastItem batchItem
	if fastSubmission(raw, &fastItem.jsonSubmission, &fastItem.IdempotencyKey) {
		var slow batchItem
		if err := decodeStrict(raw, &slow); err != nil {
			t.Fatalf("fast path read batch item %q, encoding/json refuses it: %v", raw, err)
		}
		if !reflect.DeepEqual(fastItem, slow) {
			t.Fatalf("batch item %q:\nfast path     %#v\nencoding/json %#v", raw, fastItem, slow)
		}
	}
}

// TestAppendAcceptedMatchesEncoder: the 202 answer written by hand is the
// one jsonSerializer writes for the same map, and a message id is always
// written by hand.
func TestAppendAcceptedMatchesEncoder(t *testing.T) {
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		id, status string
		isID       bool // must be written by hand
	}{
		{queue.NewID(now), queue.StatusQueued, true}, {queue.NewID(now), queue.StatusScheduled, true},
		{"a<b>&c ~!", "x", false}, {`a"b`, "x", false}, {`a\b`, "x", false}, {"a\nb", "x", false},
		{"é", "x", false}, {"a\u2028", "x", false}, {"", "", false},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(map[string]string{"id": c.id, "status": c.status}); err != nil {
			t.Fatal(err)
		}
		got := appendAccepted(nil, c.id, c.status)
		if got == nil {
			if c.isID {
				t.Errorf("id %q not written by hand", c.id)
			}
			continue
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%q %q: got %s, the encoder writes %s", c.id, c.status, got, want.Bytes())
		}
	}
}

// TestJSONSpecial8 checks the eight-byte test against every byte value in
// every position: it must flag each '"', '\\' and control character.
func TestJSONSpecial8(t *testing.T) {
	for c := 0; c < 256; c++ {
		special := c == '"' || c == '\\' || c < ' '
		for pos := 0; pos < 8; pos++ {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			if got := jsonSpecial8(binary.LittleEndian.Uint64(b)); special && !got {
				t.Errorf("byte %#x at %d not flagged", c, pos)
			} else if !special && got {
				t.Errorf("byte %#x at %d flagged", c, pos)
			}
		}
	}
}
