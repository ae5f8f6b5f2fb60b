package redistest

import (
	"errors"
	"os/exec"
	"testing"
)

// A port some other Redis already listens on is refused, not shared: the
// server started there cannot bind, or the one that answers is not it.
func TestStartRefusesAPortAnotherServerHolds(t *testing.T) {
	t.Parallel()
	other := Start(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: t.TempDir(), bin: bin, tb: t, port: other.port, Addr: other.Addr,
		args: []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}}
	t.Cleanup(s.Stop)
	if err := s.start(); !errors.Is(err, errPortTaken) {
		t.Fatalf("start on %s, held by another server: %v, want errPortTaken", other.Addr, err)
	}
	if s.cmd != nil {
		t.Error("the refused redis-server still runs")
	}
}
