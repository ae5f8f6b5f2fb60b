// Package syncbuf is a bytes.Buffer that a running component (a logger, a
// command's output) may write while the test reads it: tests wait on what
// it says with testwait.Until.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for one or more writers and readers at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
