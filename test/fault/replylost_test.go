package fault

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestEnqueueReplyLost makes Redis store a submission and lose the reply,
// deterministically: the API process reaches Redis through a forwarder that
// passes the enqueue script on and cuts the connection instead of
// returning its answer (what a Redis crash or restart between the write and
// the reply does; TestAcceptedMeansKept meets it by chance). The contract
// says 503 means nothing was stored, so a client may retry without a
// duplicate; a 202 would be right too, since the message is stored. A 503
// for a message that is then delivered is a broken promise: the client's
// retry sends the mail twice, under two Message-IDs no receiver can
// deduplicate.
//
// With an Idempotency-Key the retry is safe either way: the key was stored
// with the message, and the retry answers the first id.
func TestEnqueueReplyLost(t *testing.T) {
	t.Parallel()
	// One worker delivers in the order of submission, so once the last
	// message arrived, every earlier one that was stored has arrived too.
	e := newEnv(t, settings{Workers: 1})
	rf := startForwarder(t, e.redis.Addr)
	api := e.startRole("api", e.writeConfig("api.yaml", "redis://"+rf.addr+"/0"))
	e.startRole("worker", e.cfgPath)

	before := e.mustSubmit(api, 1)
	rf.LoseReplies([]byte("eval")) // EVALSHA, or EVAL after NOSCRIPT: only the enqueue script here
	plain := e.submit(api, 1)
	keyed := e.submitWith(api, 2, map[string]string{"Idempotency-Key": "reply-lost-2"})
	rf.LoseReplies(nil)
	retry := e.submitWith(api, 2, map[string]string{"Idempotency-Key": "reply-lost-2"})
	after := e.mustSubmit(api, 1)

	for name, a := range map[string]answer{"without key": plain, "with key": keyed} {
		if a.err != nil || (a.status != http.StatusAccepted && !(a.status == http.StatusServiceUnavailable && a.code == "queue_unavailable")) {
			t.Fatalf("submission %s whose reply Redis lost: %d %s %v; want 202 or 503 queue_unavailable", name, a.status, a.body, a.err)
		}
	}
	if retry.status != http.StatusAccepted || (keyed.status == http.StatusAccepted && retry.id != keyed.id) {
		t.Fatalf("retry with the same Idempotency-Key: %d %s (first answer %d %s)", retry.status, retry.body, keyed.status, keyed.body)
	}

	known := append(append(before, retry.id), after...)
	if plain.status == http.StatusAccepted {
		known = append(known, plain.id)
	}
	got := e.waitDelivered(known, 30*time.Second)
	c := count(known, got)
	stored := len(e.rdb.Keys(context.Background(), "mailgate:{"+route+"}:msg:*").Val())
	if c.duplicates > 0 {
		t.Errorf("%d duplicates: the Idempotency-Key retry was delivered twice", c.duplicates)
	}
	if plain.status == http.StatusServiceUnavailable && (c.unaccepted > 0 || stored > len(known)) {
		t.Errorf("the submission without Idempotency-Key was answered 503 queue_unavailable (%q), "+
			"yet it was stored (%d messages in Redis, %d answered 202) and delivered (%d arrivals under an id never answered): "+
			"a client that retries, as the 503 invites, sends it twice", plain.body, stored, len(known), c.unaccepted)
	}
	e.waitCountsDrained(10 * time.Second) // a retried enqueue counted once
	t.Logf("fault: enqueue reply lost: answered without key=%d with key=%d, retry with key=%d (same id: %v); "+
		"stored=%d delivered=%d delivered-after-503=%d duplicates=%d",
		plain.status, keyed.status, retry.status, keyed.status != http.StatusAccepted || retry.id == keyed.id,
		stored, c.delivered, c.unaccepted, c.duplicates)
}
