package exosim

import (
	"fmt"
	"sync"

	"github.com/emersion/go-smtp"
)

// Stage names the point of the SMTP conversation a scripted Reply replaces.
type Stage int

const (
	// StageConnect replaces the 220 greeting: a 4xx or 5xx reply is sent and
	// the connection closed, as a throttled Exchange front end does.
	StageConnect Stage = iota
	// StageAuth answers the AUTH command itself, before any credentials.
	StageAuth
	// StageMail answers MAIL FROM.
	StageMail
	// StageRcpt answers one RCPT TO.
	StageRcpt
	// StageData answers the end of DATA, after the whole message was read.
	StageData
)

func (s Stage) String() string {
	switch s {
	case StageConnect:
		return "connect"
	case StageAuth:
		return "auth"
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// Reply is a scripted answer for the next command at Stage, given instead of
// the simulator's own. A scripted reply at StageData keeps the message only
// if Code is 2xx. At the other stages a 2xx Code lets the command proceed
// normally (go-smtp writes its own 2xx text there).
type Reply struct {
	Stage    Stage
	Code     int    // e.g. 451
	Enhanced string // e.g. "4.7.500"; empty gives X.0.0
	Text     string
	// Drop closes the TCP connection instead of replying, as a lost
	// connection or a crashed front end would.
	Drop bool
}

func (r Reply) err() *smtp.SMTPError {
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: parseEnhanced(r.Enhanced), Message: r.Text}
}

func (r Reply) success() bool { return !r.Drop && r.Code >= 200 && r.Code < 300 }

// script holds the queued replies, one FIFO per stage, shared by every
// connection: the next command at a stage on any connection takes the next
// reply.
type script struct {
	mu     sync.Mutex
	queues map[Stage][]Reply
}

func (s *script) push(rs ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queues == nil {
		s.queues = make(map[Stage][]Reply)
	}
	for _, r := range rs {
		s.queues[r.Stage] = append(s.queues[r.Stage], r)
	}
}

func (s *script) next(st Stage) (Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[st]
	if len(q) == 0 {
		return Reply{}, false
	}
	s.queues[st] = q[1:]
	return q[0], true
}

func (s *script) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}
