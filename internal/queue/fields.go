package queue

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Fields of a message's hash. The Lua scripts use the same names: script
// writes them into the script text, so Go and Lua cannot disagree.
const (
	fieldApp          = "app"
	fieldRoute        = "route"
	fieldFrom         = "from"
	fieldHeaderFrom   = "header_from"
	fieldRcpt         = "rcpt"
	fieldTo           = "to"
	fieldCc           = "cc"
	fieldSubject      = "subject"
	fieldMessageID    = "message_id"
	fieldMetadata     = "metadata"
	fieldStatus       = "status"
	fieldAttempts     = "attempts"
	fieldCreatedAt    = "created_at"
	fieldUpdatedAt    = "updated_at"
	fieldLease        = "lease"
	fieldBody         = "body"
	fieldLastResponse = "last_response"
	fieldDueAt        = "due_at"
	fieldRequeuedAt   = "requeued_at"
	fieldSendAt       = "send_at" // a scheduled message's send_at (schedule.go)
	// fieldLane is the lane of the message: the lower-cased envelope
	// sender, whose messages Claim takes in turn with other senders' and
	// which a limit of that mailbox can make wait as a whole.
	fieldLane = "lane"
	// fieldWaitingBytes holds the message's size while it counts in the
	// route's waiting counters, and is removed when it stops counting: its
	// presence makes every decrement happen once (see doc.go, "Limits").
	fieldWaitingBytes = "waiting_bytes"
)

// Fields of a route's waiting counters (keys.Route.Waiting). An app's fields
// are waitingApp + app + waitingAppMessages or waitingAppBytes; the two
// suffixes end differently, so no field of one app is a field of another.
const (
	waitingBytes       = "bytes"
	waitingApp         = "app:"
	waitingAppMessages = ":messages"
	waitingAppBytes    = ":bytes"
)

// luaNames puts the field names and status values into a script's text as
// Lua string literals. No placeholder is a prefix of another.
var luaNames = strings.NewReplacer(
	"$F_APP", lua(fieldApp),
	"$F_LEASE", lua(fieldLease),
	"$F_STATUS", lua(fieldStatus),
	"$F_UPDATED_AT", lua(fieldUpdatedAt),
	"$F_ATTEMPTS", lua(fieldAttempts),
	"$F_BODY", lua(fieldBody),
	"$F_DUE_AT", lua(fieldDueAt),
	"$F_REQUEUED_AT", lua(fieldRequeuedAt),
	"$F_CREATED_AT", lua(fieldCreatedAt),
	"$F_LANE", lua(fieldLane),
	"$F_SEND_AT", lua(fieldSendAt),
	"$F_FROM", lua(fieldFrom),
	"$F_WAITING_BYTES", lua(fieldWaitingBytes),
	"$W_BYTES", lua(waitingBytes),
	"$W_APP_MESSAGES", lua(waitingAppMessages),
	"$W_APP_BYTES", lua(waitingAppBytes),
	"$W_APPPFX", lua(waitingApp),
	"$S_QUEUED", lua(StatusQueued),
	"$S_SENDING", lua(StatusSending),
	"$S_DEFERRED", lua(StatusDeferred),
	"$S_SENT", lua(StatusSent),
	"$S_FAILED", lua(StatusFailed),
	"$S_SCHEDULED", lua(StatusScheduled),
	"$S_CANCELLED", lua(StatusCancelled),
)

func lua(s string) string { return `"` + s + `"` }

// script builds a Lua script whose text names fields and statuses through
// the placeholders of luaNames. A placeholder left unresolved is a bug in
// this package, caught by the first test that loads it.
func script(src string) *redis.Script {
	text := luaNames.Replace(src)
	if i := strings.IndexByte(text, '$'); i >= 0 {
		panic(fmt.Sprintf("queue: unknown placeholder in script: %.20q", text[i:]))
	}
	return redis.NewScript(text)
}

// named pairs the values of an HMGET with the fields asked for, so the
// caller reads them by name rather than by position. Missing fields are "".
func named(fields []string, vals []any) map[string]string {
	h := make(map[string]string, len(fields))
	for i, f := range fields {
		if i < len(vals) {
			s, _ := vals[i].(string)
			h[f] = s
		}
	}
	return h
}
