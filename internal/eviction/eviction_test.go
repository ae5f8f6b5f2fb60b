package eviction

import (
	"context"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/test/redistest"
)

func TestRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantPolicy string
		wantSource string
	}{
		{"default", nil, NoEviction, "CONFIG GET"},
		{"allkeys-lru", []string{"--maxmemory-policy", "allkeys-lru"}, "allkeys-lru", "CONFIG GET"},
		// Managed Redis often renames CONFIG; INFO memory still tells.
		{"CONFIG renamed", []string{"--maxmemory-policy", "volatile-lru", "--rename-command", "CONFIG", ""}, "volatile-lru", "INFO memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartWith(t, redistest.Options{Args: tt.args})
			r := Read(context.Background(), srv.Client())
			if r.Policy != tt.wantPolicy || r.Source != tt.wantSource || r.Err != nil {
				t.Fatalf("Read = %+v, want policy %s by %s", r, tt.wantPolicy, tt.wantSource)
			}
			if safe := tt.wantPolicy == NoEviction; r.Safe() != safe || (r.Problem() == "") != safe {
				t.Fatalf("Safe %v, Problem %q", r.Safe(), r.Problem())
			}
			if !r.Safe() {
				for _, want := range []string{tt.wantPolicy, "maxmemory-policy noeviction", "redis.allow_eviction: true", "revoked token"} {
					if !strings.Contains(r.Problem(), want) {
						t.Errorf("Problem lacks %q: %s", want, r.Problem())
					}
				}
			}
		})
	}
}

// With Redis unreachable the policy is unknown, with the reason, and not
// reported as a problem: the caller warns and goes on.
func TestReadUnreachable(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := srv.Client()
	srv.Stop()
	r := Read(context.Background(), c)
	if r.Known() || r.Err == nil || r.Problem() != "" || r.Safe() {
		t.Fatalf("Read of a stopped Redis = %+v", r)
	}
	if !strings.Contains(r.Err.Error(), "CONFIG GET") || !strings.Contains(r.Err.Error(), "INFO memory") {
		t.Errorf("error does not say what was tried: %v", r.Err)
	}
}
