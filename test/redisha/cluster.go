package redisha

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// Cluster is a Redis Cluster of three masters with one replica each.
type Cluster struct {
	Nodes []*Node
	tb    testing.TB
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
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin := serverBin(tb)
	cli := testbin.Path(tb, "redis-cli", "redis-tools")
	c := &Cluster{tb: tb}
	for i := range 6 {
		bus := claimPort(tb)
		n := newNode(tb, bin, fmt.Sprintf("cluster%d", i), func(port int, dir string) []string {
			return append(dataArgs(port, dir),
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", "1000",
				"--cluster-replica-validity-factor", "0",
				"--cluster-require-full-coverage", "no")
		})
		n.Start()
		c.Nodes = append(c.Nodes, n)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Seeds()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
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
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Seeds()})
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
		if role[0] == "master" {
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
		} else if role[3] != "connected" {
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
