package oauth

// Waiting is the number of callers waiting for the request to Entra under
// way, so tests can release it once they all wait.
func (s *TokenSource) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		return 0
	}
	return s.inflight.waiters
}
