package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
)

func TestNewRedisClientTopologies(t *testing.T) {
	t.Parallel()
	single, err := NewRedisClient(config.Redis{URL: "redis://127.0.0.1:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if _, ok := single.(*redis.Client); !ok {
		t.Errorf("url: got %T, want *redis.Client", single)
	}

	cl, err := NewRedisClient(config.Redis{Cluster: config.RedisCluster{Addrs: []string{"127.0.0.1:7000"}},
		MinReplicasAcked: 1, ReplicaAckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cc, ok := cl.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("cluster: got %T, want *redis.ClusterClient", cl)
	}
	// WAIT may block for replica_ack_timeout: the read deadline leaves room.
	if rt := cc.Options().ReadTimeout; rt < 5*time.Second {
		t.Errorf("cluster read timeout %s is shorter than replica_ack_timeout", rt)
	}

	fromURL, err := NewRedisClient(config.Redis{Cluster: config.RedisCluster{URL: "redis://u:p@127.0.0.1:7000?addr=127.0.0.1:7001"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fromURL.Close()
	if got := fromURL.(*redis.ClusterClient).Options().Addrs; len(got) != 2 {
		t.Errorf("cluster url: addrs %v, want two", got)
	}
	// A master that dies and stays dead is not the layout for a minute
	// (go-redis's default) for commands go-redis does not retry.
	for _, c := range []redis.UniversalClient{cl, fromURL} {
		if ri := c.(*redis.ClusterClient).Options().ClusterStateReloadInterval; ri != clusterStateReloadInterval {
			t.Errorf("cluster layout reloaded every %s, want %s", ri, clusterStateReloadInterval)
		}
	}

	se, err := NewRedisClient(config.Redis{Sentinel: config.RedisSentinel{MasterName: "mymaster", Addrs: []string{"127.0.0.1:26379"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer se.Close()
	if _, ok := se.(*redis.Client); !ok {
		t.Errorf("sentinel: got %T, want the failover *redis.Client", se)
	}
}

// A bad URL is reported without the URL, which may hold a password.
func TestNewRedisClientHidesSecrets(t *testing.T) {
	t.Parallel()
	for _, c := range []config.Redis{
		{URL: "redis://:hunter2@%zz"},
		{Cluster: config.RedisCluster{URL: "redis://:hunter2@%zz"}},
		{Sentinel: config.RedisSentinel{URL: "redis://:hunter2@%zz?master_name=m"}},
	} {
		_, err := NewRedisClient(c)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %v: want one that hides the password", err)
		}
	}
}
