package redisha_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redisha"
	"github.com/mailgate/mailgate/test/testpki"
)

// msg is a minimal message of route.
func msg(route, idem string) queue.Message {
	return queue.Message{App: "app", Route: route, From: "a@contoso.com", Recipients: []string{"b@contoso.com"},
		Body: []byte("Subject: x\r\n\r\nx\r\n"), IdempotencyKey: idem}
}

// checkReplicaAck shows that WAIT reaches the master holding the route and
// counts its replicas: one replica confirms, two cannot, and the answer
// then says how many did.
func checkReplicaAck(t *testing.T, rdb redis.UniversalClient, route string) {
	t.Helper()
	ctx := context.Background()
	one := queue.New(rdb, queue.Options{MinReplicas: 1, ReplicaTimeout: 2 * time.Second})
	id, created, err := one.Enqueue(ctx, msg(route, ""))
	if err != nil || !created {
		t.Fatalf("enqueue with one replica asked: %v (created %v)", err, created)
	}
	if ok, err := one.Exists(ctx, route, id); err != nil || !ok {
		t.Fatalf("stored message %s not found: %v", id, err)
	}
	// An idempotent replay writes nothing, yet is confirmed too.
	if _, _, err := one.Enqueue(ctx, msg(route, "k1")); err != nil {
		t.Fatal(err)
	}
	if first, created, err := one.Enqueue(ctx, msg(route, "k1")); err != nil || created || first == "" {
		t.Fatalf("replay: %q %v %v", first, created, err)
	}

	// A batch is confirmed too.
	for i, r := range one.EnqueueManyRetrying(ctx, []queue.Message{msg(route, ""), msg(route, "")}, 5*time.Second) {
		if r.Err != nil || !r.Created {
			t.Fatalf("batch item %d with one replica asked: %+v", i, r)
		}
	}

	two := queue.New(rdb, queue.Options{MinReplicas: 2, ReplicaTimeout: 200 * time.Millisecond})
	_, _, err = two.EnqueueRetrying(ctx, msg(route, ""), 5*time.Second)
	var nr *queue.NotReplicatedError
	if !errors.As(err, &nr) {
		t.Fatalf("two replicas asked of one: got %v, want a NotReplicatedError", err)
	}
	if nr.Got != 1 || nr.Want != 2 {
		t.Fatalf("WAIT reported %d of %d replicas, want 1 of 2", nr.Got, nr.Want)
	}
}

func TestReplicaAckOnCluster(t *testing.T) {
	t.Parallel()
	c := redisha.StartCluster(t)
	rdb, err := gateway.NewRedisClient(config.Redis{Cluster: config.RedisCluster{Addrs: c.Seeds()[:2]}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	for _, k := range []string{"mailgate:{m365}:ready", "plain", "{}x", "a{b}c{d}"} {
		want, err := c.Nodes[0].Client().ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := redisha.Slot(k); got != int(want) {
			t.Errorf("Slot(%q) = %d, Redis says %d", k, got, want)
		}
	}
	// Routes on three different masters: WAIT must go to each one's own.
	routes := []string{"a", "b", "c"}
	seen := map[string]string{}
	for _, r := range routes {
		m := c.MasterOf("{" + r + "}")
		if prev, dup := seen[m.Addr]; dup {
			t.Fatalf("routes %s and %s share master %s; pick other names", prev, r, m.Addr)
		}
		seen[m.Addr] = r
		checkReplicaAck(t, rdb, r)
	}

	// The eviction policy is checked on every node, not on whichever one
	// answers first: one replica that may evict keys is refused.
	last := c.Nodes[len(c.Nodes)-1]
	if err := last.Client().ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := (&config.Config{Redis: config.Redis{Cluster: config.RedisCluster{Addrs: c.Seeds()[:1]}},
		Auth: config.Auth{SigningKey: "redisha-signing-key-0123456789abcdef"}}).WithDefaults()
	if _, err := gateway.New(gateway.Options{Config: cfg, Role: gateway.RoleWorker}); err == nil || !strings.Contains(err.Error(), "allkeys-lru") {
		t.Fatalf("gateway on a cluster with an evicting node: %v, want a refusal naming allkeys-lru", err)
	}
}

func TestReplicaAckOnSentinel(t *testing.T) {
	t.Parallel()
	// Passwords on the data nodes and on the sentinels (their *_file forms
	// are internal/config's tests').
	s := redisha.StartSentinelWith(t, redisha.SentinelOptions{Password: "data-pw", SentinelPassword: "sentinel-pw"})
	cfg := &config.Config{Redis: config.Redis{Sentinel: config.RedisSentinel{
		MasterName: redisha.MasterName, Addrs: s.Addrs(), Password: "data-pw", SentinelPassword: "sentinel-pw"}}}
	rdb, err := gateway.NewRedisClient(cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	checkReplicaAck(t, rdb, "m365")

	// A wrong sentinel password is refused by the sentinels.
	bad := cfg.Redis
	bad.Sentinel.SentinelPassword = "wrong"
	wrong, err := gateway.NewRedisClient(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.Ping(context.Background()).Err(); err == nil {
		t.Error("a wrong sentinel password was accepted")
	}
}

// A cluster whose nodes speak only TLS is reached with redis.cluster.tls,
// verified against its CA; without TLS, or trusting another CA, it is not.
func TestClusterOverTLS(t *testing.T) {
	t.Parallel()
	c, tl := redisha.StartClusterTLS(t)
	ctx := context.Background()
	connect := func(tc config.RedisTLS) error {
		rdb, err := gateway.NewRedisClient(config.Redis{Cluster: config.RedisCluster{Addrs: c.Seeds()[:1], TLS: tc}})
		if err != nil {
			return err
		}
		defer rdb.Close()
		q := queue.New(rdb, queue.Options{})
		id, _, err := q.Enqueue(ctx, msg("tls", ""))
		if err != nil {
			return err
		}
		_, err = q.Get(ctx, "tls", id)
		return err
	}
	if err := connect(config.RedisTLS{Enabled: true, CAFile: tl.CAFile, ServerName: tl.ServerName}); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	if err := connect(config.RedisTLS{}); err == nil {
		t.Error("a plain connection to TLS-only nodes worked")
	}
	otherCA := filepath.Join(t.TempDir(), "other.crt")
	testpki.WriteSelfSigned(t, otherCA, filepath.Join(t.TempDir(), "other.key"), tl.ServerName)
	if err := connect(config.RedisTLS{Enabled: true, CAFile: otherCA, ServerName: tl.ServerName}); err == nil {
		t.Error("a connection trusting another CA worked")
	}
}
