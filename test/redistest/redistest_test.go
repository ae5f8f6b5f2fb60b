package redistest_test

import (
	"context"
	"testing"

	"github.com/mailgate/mailgate/test/redistest"
)

// Many servers at once get distinct ports, each answers as itself, and a
// restarted server keeps its address and its data (with the AOF).
func TestServersAreDistinctAndSurviveRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seen := map[string]bool{}
	var servers []*redistest.Server
	for i := range 6 {
		s := redistest.Start(t)
		if seen[s.Addr] {
			t.Fatalf("server %d was given %s, which another server of this test holds", i, s.Addr)
		}
		seen[s.Addr] = true
		servers = append(servers, s)
		if err := s.Client().Set(ctx, "who", s.Addr, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		if got, err := s.Client().Get(ctx, "who").Result(); err != nil || got != s.Addr {
			t.Errorf("server on %s holds who=%q (%v): another server answered", s.Addr, got, err)
		}
	}

	s := redistest.StartWith(t, redistest.Options{AppendFsyncAlways: true})
	c := s.Client()
	if err := c.Set(ctx, "kept", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr
	s.Restart()
	if s.Addr != addr {
		t.Fatalf("restart moved the server from %s to %s", addr, s.Addr)
	}
	if got, err := c.Get(ctx, "kept").Result(); err != nil || got != "yes" {
		t.Errorf("after restart: kept=%q, %v", got, err)
	}
}
