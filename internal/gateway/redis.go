package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/eviction"
)

// NewRedisClient connects to the configured Redis: a single node
// (redis.url), a master found through Sentinel (redis.sentinel) or a Redis
// Cluster (redis.cluster). Every command of mailgate goes through the
// returned client, so the topology is chosen here and nowhere else.
// Its errors never show a URL or a password.
//
// It fails fast while Redis is down: go-redis's defaults (5 dials per try, 4
// tries) would make every request of an outage wait about 2 s for its 503.
// The API answers and retries where it matters, and the workers have loops
// of their own. A cluster client still follows MOVED and ASK redirects, so a
// resharding or a promoted replica costs one extra round trip, not an error;
// a master that dies and stays dead costs errors until its replica is
// promoted and the client has read the new layout (newClusterClient).
func NewRedisClient(c config.Redis) (redis.UniversalClient, error) {
	// WAIT blocks for up to replica_ack_timeout; the read deadline must not
	// cut it short (go-redis's default read timeout is 3 s).
	readTimeout := time.Duration(0)
	if c.MinReplicasAcked > 0 && c.ReplicaAckTimeout+time.Second > 3*time.Second {
		readTimeout = c.ReplicaAckTimeout + time.Second
	}
	switch {
	case c.Sentinel.IsSet():
		return newSentinelClient(c.Sentinel, readTimeout)
	case c.Cluster.IsSet():
		return newClusterClient(c.Cluster, readTimeout)
	}
	ro, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, errors.New("redis.url is not a valid redis:// or rediss:// URL (not shown: it may hold a password)")
	}
	ro.DialerRetries, ro.MaxRetries = 1, 1
	if readTimeout > 0 {
		ro.ReadTimeout = readTimeout
	}
	return redis.NewClient(ro), nil
}

func newSentinelClient(s config.RedisSentinel, readTimeout time.Duration) (redis.UniversalClient, error) {
	o := &redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.Addrs}
	if s.URL != "" {
		var err error
		if o, err = redis.ParseFailoverURL(s.URL); err != nil {
			return nil, errors.New("redis.sentinel.url is not a valid redis:// or rediss:// URL (not shown: it may hold a password)")
		}
	} else {
		o.DB = s.DB
	}
	if s.SentinelUsername != "" {
		o.SentinelUsername = s.SentinelUsername
	}
	if s.SentinelPassword != "" {
		o.SentinelPassword = s.SentinelPassword
	}
	if s.Username != "" {
		o.Username = s.Username
	}
	if s.Password != "" {
		o.Password = s.Password
	}
	if s.TLS.Enabled {
		tc, err := redisTLS("redis.sentinel.tls", s.TLS)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
	}
	o.DialerRetries, o.MaxRetries = 1, 1
	if readTimeout > 0 {
		o.ReadTimeout = readTimeout
	}
	return redis.NewFailoverClient(o), nil
}

// clusterStateReloadInterval is how old the cluster client's layout may
// grow before a command has it read again (see newClusterClient).
const clusterStateReloadInterval = 10 * time.Second

func newClusterClient(c config.RedisCluster, readTimeout time.Duration) (redis.UniversalClient, error) {
	o := &redis.ClusterOptions{Addrs: c.Addrs}
	if c.URL != "" {
		var err error
		if o, err = redis.ParseClusterURL(c.URL); err != nil {
			return nil, errors.New("redis.cluster.url is not a valid redis:// or rediss:// URL (not shown: it may hold a password)")
		}
	}
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
	}
	if c.TLS.Enabled {
		tc, err := redisTLS("redis.cluster.tls", c.TLS)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
	}
	o.DialerRetries, o.MaxRetries = 1, 1
	// go-redis reads the cluster's layout again on a MOVED reply, when a
	// retried command fails over, and then only every
	// ClusterStateReloadInterval (60 s by default). The enqueue scripts are
	// never retried by go-redis and ask for a reload themselves when they
	// fail (internal/queue); this shorter interval is the backstop for any
	// other command that fails on a master that died and stays dead. It
	// costs one CLUSTER SLOTS per interval, and only while commands are
	// sent (the reload is triggered by a command, not by a timer).
	o.ClusterStateReloadInterval = clusterStateReloadInterval
	if readTimeout > 0 {
		o.ReadTimeout = readTimeout
	}
	return redis.NewClusterClient(o), nil
}

// redisTLS builds the TLS configuration of Sentinel or Cluster connections.
// With no server_name, each connection checks the host it dialled.
func redisTLS(key string, t config.RedisTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an explicit operator choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", key, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", key, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.client_cert_file: %w", key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ReadEviction reads the eviction policy of every node that may hold keys:
// on a cluster each master and replica (a replica becomes master in a
// failover), else the one node. The first unsafe or unreadable answer wins.
func ReadEviction(ctx context.Context, rdb redis.UniversalClient) eviction.Result {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return eviction.Read(ctx, rdb)
	}
	var mu sync.Mutex
	var worst *eviction.Result
	err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		res := eviction.Read(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		if worst == nil || worst.Safe() && !res.Safe() || worst.Known() && !res.Known() {
			worst = &res
		}
		return nil
	})
	if err != nil || worst == nil {
		return eviction.Result{Err: fmt.Errorf("read maxmemory-policy of the cluster's nodes: %v", err)}
	}
	return *worst
}
