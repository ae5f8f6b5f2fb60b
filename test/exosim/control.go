package exosim

import "strings"

// How tests steer the simulator: scripted replies and tenant switches.

// Script queues replies for upcoming commands. Each is used once, by the
// next command at its Stage on any connection, instead of the simulator's
// own answer.
func (s *Sim) Script(r ...Reply) { s.script.push(r...) }

// PendingScript is the number of scripted replies not yet used.
func (s *Sim) PendingScript() int { return s.script.pending() }

// SetBasicAuthDisabled makes AUTH LOGIN and PLAIN answer 550 5.7.30, as
// tenants will after basic auth for SMTP AUTH is retired.
func (s *Sim) SetBasicAuthDisabled(disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.basicAuthDisabled = disabled
}

// SetSMTPAuthDisabled turns SMTP AUTH off (535 5.7.139) for one mailbox, or
// for the whole tenant when mailbox is "" (Set-TransportConfig
// -SmtpClientAuthenticationDisabled).
func (s *Sim) SetSMTPAuthDisabled(mailbox string, disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.smtpAuthOff[strings.ToLower(mailbox)] = disabled
}

func (s *Sim) basicAuthIsDisabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.basicAuthDisabled
}

func (s *Sim) smtpAuthDisabled(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.smtpAuthOff[key]
}
