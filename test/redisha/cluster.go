package redisha

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testpki"
	"github.com/mailgate/mailgate/test/testwait"
)

// Cluster is a Redis Cluster of three masters with one replica each.
type Cluster struct {
	Nodes    []*Node
	tb       testing.TB
	replicas int // per master
}

// StartCluster starts the six nodes, joins them with `redis-cli --cluster
// create`, and waits until every node sees a healthy cluster and every
// replica is in sync with its master.
//
// A node is declared failed after one second (cluster-node-timeout), and a
// replica may take over however long it was disconnected
// (cluster-replica-validity-factor 0), so a killed master is replaced in a
// few seconds. cluster-require-full-coverage is off, as the README advises:
// the other masters keep serving their routes while one is replaced.
func StartCluster(tb testing.TB) *Cluster { return startCluster(tb, 6, 1, nil) }

// TLS is what a TLS set-up's clients need: the CA that signed every node's
// certificate (ServerName is the name in it; nodes listen on 127.0.0.1).
type TLS struct {
	CAFile     string
	ServerName string
}

// StartClusterTLS starts a cluster of three masters without replicas whose
// nodes speak only TLS, to each other too, and returns it with what a
// client needs to verify them.
func StartClusterTLS(tb testing.TB) (*Cluster, TLS) {
	tb.Helper()
	const name = "redis.test"
	dir := tb.TempDir()
	cert, key := filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	testpki.WriteSelfSigned(tb, cert, key, name)
	pem, err := os.ReadFile(cert)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	files := &tlsFiles{cert: cert, key: key, config: &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}}
	return startCluster(tb, 3, 0, files), TLS{CAFile: cert, ServerName: name}
}

type tlsFiles struct {
	cert, key string
	config    *tls.Config
}

func startCluster(tb testing.TB, nodes, replicas int, tf *tlsFiles) *Cluster {
	tb.Helper()
	bin := serverBin(tb)
	cli := testbin.Path(tb, "redis-cli", "redis-tools")
	c := &Cluster{tb: tb, replicas: replicas}
	for i := range nodes {
		bus := claimPort(tb)
		n := newNode(tb, bin, fmt.Sprintf("cluster%d", i), func(port int, dir string) []string {
			args := append(dataArgs(port, dir),
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", "1000",
				"--cluster-replica-validity-factor", "0",
				"--cluster-require-full-coverage", "no")
			if tf != nil {
				args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
					"--tls-cert-file", tf.cert, "--tls-key-file", tf.key, "--tls-ca-cert-file", tf.cert,
					"--tls-cluster", "yes", "--tls-replication", "yes", "--tls-auth-clients", "no")
			}
			return args
		})
		if tf != nil {
			n.tls = tf.config
		}
		n.Start()
		c.Nodes = append(c.Nodes, n)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Seeds()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if tf != nil {
		args = append(args, "--tls", "--cacert", tf.cert, "--sni", tf.config.ServerName)
	}
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// Seeds are the addresses of all six nodes.
func (c *Cluster) Seeds() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Seeds(), TLSConfig: c.Nodes[0].tls})
	c.tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WaitHealthy waits until every running node reports cluster_state:ok, all
// 16384 slots are served by running masters, and every master has an
// in-sync replica.
func (c *Cluster) WaitHealthy() {
	c.tb.Helper()
	testwait.UntilNil(c.tb, 30*time.Second, c.healthy)
}

func (c *Cluster) healthy() error {
	ctx, cancel := ctx5()
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return notYet("%s: cluster not ok", n.Addr)
		}
		role, err := cl.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if role[0] == "master" && c.replicas > 0 {
			if replicas, _ := role[2].([]any); len(replicas) < 1 {
				return notYet("master %s has no replica", n.Addr)
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(repl, "state=online") {
				return notYet("master %s: replica not online", n.Addr)
			}
		} else if role[0] != "master" && role[3] != "connected" {
			return notYet("replica %s: link %v", n.Addr, role[3])
		}
	}
	return nil
}

// Slot is the hash slot of key.
func Slot(key string) int { return int(crc16(hashTag(key)) % 16384) }

// MasterOf is the running node that is master of key's slot, as the
// running nodes see it.
func (c *Cluster) MasterOf(key string) *Node {
	c.tb.Helper()
	var m *Node
	testwait.UntilNil(c.tb, 30*time.Second, func() error {
		var err error
		m, err = c.masterOf(key)
		return err
	})
	return m
}

func (c *Cluster) masterOf(key string) (*Node, error) {
	slot := Slot(key)
	ctx, cancel := ctx5()
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		slots, err := n.Client().ClusterSlots(ctx).Result()
		if err != nil {
			return nil, err
		}
		for _, s := range slots {
			if slot < int(s.Start) || slot > int(s.End) || len(s.Nodes) == 0 {
				continue
			}
			for _, cand := range c.Nodes {
				if cand.Addr == s.Nodes[0].Addr && cand.Running() {
					role, err := cand.Client().Do(ctx, "ROLE").Slice()
					if err == nil && role[0] == "master" {
						return cand, nil
					}
				}
			}
			return nil, notYet("slot %d: master %s not running or not master", slot, s.Nodes[0].Addr)
		}
		return nil, notYet("slot %d not served", slot)
	}
	return nil, notYet("no node running")
}

// KillMasterOf SIGKILLs the master of key's slot and returns it.
func (c *Cluster) KillMasterOf(key string) *Node {
	c.tb.Helper()
	m := c.MasterOf(key)
	m.Kill()
	return m
}

// WaitPromoted waits until a running replica has taken over key's slot
// from old, and returns the new master.
func (c *Cluster) WaitPromoted(key string, old *Node) *Node {
	c.tb.Helper()
	var m *Node
	testwait.UntilNil(c.tb, 30*time.Second, func() error {
		var err error
		if m, err = c.masterOf(key); err != nil {
			return err
		}
		if m == old {
			return notYet("%s still master", old.Addr)
		}
		return nil
	})
	return m
}

// hashTag is the part of key that Redis Cluster hashes: the first {…}
// with something inside, else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// crc16 is CRC-16/XMODEM, Redis Cluster's key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
