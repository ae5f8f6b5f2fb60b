package exosim

import "time"

// Message is one message the simulator accepted.
type Message struct {
	From       string   // MAIL FROM
	Rcpt       []string // RCPT TO, in order
	Data       []byte   // the DATA bytes as received, after dot-unstuffing, CRLF kept
	AuthUser   string   // the authenticated mailbox; empty in connector mode
	ClientCert string   // connector mode: CN of the client certificate that matched the connector
	At         time.Time
}

// Stats are the simulator's counters, for assertions about how mailgate
// treated Exchange. Maps are keyed by mailbox (submission) or MAIL FROM
// address (connector), in lower case, and are copies.
type Stats struct {
	Connections     int // TCP connections accepted
	OpenConnections int // TCP connections not yet closed
	Auths           int // successful AUTH commands
	AuthFailures    int // refused AUTH commands
	Drops           int // connections closed by a scripted Drop
	Messages        int // messages accepted

	// MaxConcurrent is the highest number of simultaneous connections holding
	// a slot: authenticated (submission) or past MAIL FROM (connector).
	MaxConcurrent map[string]int
	// ActiveConnections are the slots held now.
	ActiveConnections map[string]int
	// MaxMessagesInAnyMinute is the most messages accepted within any 60
	// seconds; Exchange's limit is 30.
	MaxMessagesInAnyMinute map[string]int
	// OverMinuteLimit counts messages accepted while the rolling minute
	// already held Options.MessagesPerMinute messages (Exchange would have
	// delayed them).
	OverMinuteLimit map[string]int
	// Replies counts, by enhanced status code ("4.3.2"), the replies the
	// simulator chose: its refusals and every scripted reply. go-smtp's own
	// protocol replies (250 after RCPT, 501 syntax errors) are not counted.
	Replies map[string]int
}
