package redisha_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/token"
	"github.com/mailgate/mailgate/test/redisha"
	"github.com/mailgate/mailgate/test/testwait"
)

// checkRevocationsFollowFailover runs two instances' revocation lists in
// memory on rc, each with its own client, and fails over the master that
// holds the revocation set and channel with failover. Before and after it,
// a revocation is confirmed by both instances and refused from memory at
// once; while they follow the new master, a token revoked is never let
// through (refused, or an error when the list cannot be read).
func checkRevocationsFollowFailover(t *testing.T, rc config.Redis, failover func()) {
	t.Helper()
	ctx := context.Background()
	client := func() redis.UniversalClient {
		rdb, err := gateway.NewRedisClient(rc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	var instances []*token.Revocations
	for range 2 {
		r := token.NewRevocations(client(), "mailgate", nil)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); r.Watch(wctx, nil) }()
		t.Cleanup(func() { cancel(); <-done })
		instances = append(instances, r)
	}
	waitInMemory := func() {
		t.Helper()
		for _, r := range instances {
			testwait.Until(t, 30*time.Second, r.InMemory, "the revocation list to be held in memory")
		}
	}
	// Each revocation with a client of its own, as `mailgate token revoke`
	// does: it learns the topology as it is now.
	revoke := func(jti string) (token.Receipt, error) {
		rdb, err := gateway.NewRedisClient(rc)
		if err != nil {
			return token.Receipt{}, err
		}
		defer rdb.Close()
		return token.NewRevocations(rdb, "mailgate", nil).Revoke(ctx, jti, time.Now().Add(time.Hour))
	}
	revokeConfirmed := func(jti string) {
		t.Helper()
		rc, err := revoke(jti)
		if err != nil || rc.Listening != 2 || rc.Confirmed != 2 {
			t.Fatalf("revoke %s: %+v %v, want both instances confirming", jti, rc, err)
		}
		for i, r := range instances {
			if !r.InMemory() {
				t.Fatalf("instance %d stopped answering from memory", i)
			}
			if revoked, err := r.IsRevoked(ctx, jti); err != nil || !revoked {
				t.Fatalf("instance %d, %s right after Revoke returned: %v %v", i, jti, revoked, err)
			}
		}
	}

	waitInMemory()
	revokeConfirmed("before-failover")
	failover()
	// The first revocation the new master takes: its instances may still
	// be reconnecting, and must refuse it all the same.
	testwait.UntilNil(t, 60*time.Second, func() error {
		_, err := revoke("during-failover")
		return err
	})
	for i, r := range instances {
		if revoked, err := r.IsRevoked(ctx, "during-failover"); err == nil && !revoked {
			t.Fatalf("instance %d let a revoked token through while following the new master", i)
		}
	}
	waitInMemory()
	for i, r := range instances {
		if revoked, err := r.IsRevoked(ctx, "during-failover"); err != nil || !revoked {
			t.Fatalf("instance %d, from memory after the failover: %v %v", i, revoked, err)
		}
	}
	revokeConfirmed("after-failover")
}

// On a Redis Cluster the instances subscribe on the master of the
// channel's slot, which also holds the revocation set; it is killed.
func TestRevocationsFollowClusterFailover(t *testing.T) {
	t.Parallel()
	c := redisha.StartCluster(t)
	checkRevocationsFollowFailover(t, config.Redis{Cluster: config.RedisCluster{Addrs: c.Seeds()}}, func() {
		const key = "mailgate:revocations" // the set's key and the channel's name
		c.WaitPromoted(key, c.KillMasterOf(key))
	})
}

// With Sentinel the master is killed and a replica promoted; the
// instances subscribe again on it.
func TestRevocationsFollowSentinelFailover(t *testing.T) {
	t.Parallel()
	s := redisha.StartSentinel(t)
	checkRevocationsFollowFailover(t, config.Redis{Sentinel: config.RedisSentinel{MasterName: redisha.MasterName, Addrs: s.Addrs()}}, func() {
		s.WaitPromoted(s.KillMaster())
	})
}
