package redisha

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// MasterName is the name the sentinels monitor.
const MasterName = "mymaster"

// Sentinel is one master, one replica and three sentinels (quorum 2).
type Sentinel struct {
	Data      []*Node // the master and the replica, in start order
	Sentinels []*Node
	opts      SentinelOptions
	tb        testing.TB
}

// SentinelOptions protect the set-up with passwords.
type SentinelOptions struct {
	Password         string // the data nodes' requirepass (and masterauth)
	SentinelPassword string // the sentinels' own requirepass
}

// StartSentinel starts the set-up and waits until every sentinel knows the
// master, its replica and the two other sentinels. A master is deemed down
// after one second, so a failover takes a few seconds.
func StartSentinel(tb testing.TB) *Sentinel { return StartSentinelWith(tb, SentinelOptions{}) }

// StartSentinelWith is StartSentinel with passwords.
func StartSentinelWith(tb testing.TB, o SentinelOptions) *Sentinel {
	tb.Helper()
	bin := serverBin(tb)
	sbin := testbin.Path(tb, "redis-sentinel", "redis-sentinel")
	s := &Sentinel{tb: tb, opts: o}
	master := newNode(tb, bin, "master", s.dataArgs)
	master.pass = o.Password
	master.Start()
	replica := newNode(tb, bin, "replica", func(port int, dir string) []string {
		return append(s.dataArgs(port, dir), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	})
	replica.pass = o.Password
	replica.Start()
	s.Data = []*Node{master, replica}
	for i := range 3 {
		n := newNode(tb, sbin, fmt.Sprintf("sentinel%d", i), func(port int, dir string) []string {
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, MasterName, master.Port, MasterName, MasterName, MasterName)
			if o.Password != "" {
				text += fmt.Sprintf("sentinel auth-pass %s %s\n", MasterName, o.Password)
			}
			if o.SentinelPassword != "" {
				// Sentinels use their own requirepass with each other too.
				text += fmt.Sprintf("requirepass %s\n", o.SentinelPassword)
			}
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				tb.Fatal(err)
			}
			return []string{conf}
		})
		n.pass = o.SentinelPassword
		n.Start()
		s.Sentinels = append(s.Sentinels, n)
	}
	testwait.UntilNil(tb, 30*time.Second, func() error { return s.settled(master.Addr) })
	return s
}

// Addrs are the sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr
	}
	return out
}

// Master is the data node every sentinel names as master.
func (s *Sentinel) Master() *Node {
	s.tb.Helper()
	var m *Node
	testwait.UntilNil(s.tb, 30*time.Second, func() error {
		addr, err := s.masterAddr()
		if err != nil {
			return err
		}
		for _, n := range s.Data {
			if n.Addr == addr {
				m = n
				return nil
			}
		}
		return fmt.Errorf("sentinels name %s, not one of ours", addr)
	})
	return m
}

// masterAddr is the master all sentinels agree on.
func (s *Sentinel) masterAddr() (string, error) {
	ctx, cancel := ctx5()
	defer cancel()
	var agreed string
	for _, n := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, Password: s.opts.SentinelPassword})
		hp, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
		_ = sc.Close()
		if err != nil {
			return "", err
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if agreed != "" && addr != agreed {
			return "", notYet("sentinels disagree: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	return agreed, nil
}

// settled is nil when every sentinel names master, sees a replica of it
// and the two other sentinels, and the master has an in-sync replica.
func (s *Sentinel) settled(master string) error {
	ctx, cancel := ctx5()
	defer cancel()
	if addr, err := s.masterAddr(); err != nil {
		return err
	} else if addr != master {
		return notYet("master is %s, want %s", addr, master)
	}
	for _, n := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, Password: s.opts.SentinelPassword})
		m, err := sc.Master(ctx, MasterName).Result()
		_ = sc.Close()
		if err != nil {
			return err
		}
		if m["num-slaves"] == "0" || m["num-other-sentinels"] != "2" || strings.Contains(m["flags"], "down") {
			return notYet("sentinel %s: slaves %s, other sentinels %s, flags %s", n.Addr, m["num-slaves"], m["num-other-sentinels"], m["flags"])
		}
	}
	for _, n := range s.Data {
		if n.Addr != master {
			continue
		}
		repl, err := n.Client().Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(repl, "role:master") || !strings.Contains(repl, "state=online") {
			return notYet("master %s has no online replica", master)
		}
	}
	return nil
}

// KillMaster SIGKILLs the current master and returns it.
func (s *Sentinel) KillMaster() *Node {
	s.tb.Helper()
	m := s.Master()
	m.Kill()
	return m
}

// WaitPromoted waits until the sentinels have promoted another node than
// old and it answers as master; it returns the new master.
func (s *Sentinel) WaitPromoted(old *Node) *Node {
	s.tb.Helper()
	var m *Node
	testwait.UntilNil(s.tb, 30*time.Second, func() error {
		addr, err := s.masterAddr()
		if err != nil {
			return err
		}
		if addr == old.Addr {
			return notYet("%s still master", addr)
		}
		for _, n := range s.Data {
			if n.Addr == addr {
				ctx, cancel := ctx5()
				defer cancel()
				role, err := n.Client().Do(ctx, "ROLE").Slice()
				if err != nil {
					return err
				}
				if role[0] != "master" {
					return notYet("%s not yet master", addr)
				}
				m = n
				return nil
			}
		}
		return fmt.Errorf("sentinels name %s, not one of ours", addr)
	})
	return m
}

// Rejoin restarts the killed old master as a replica of master, as the
// start script of a Sentinel deployment does (it asks the sentinels for the
// master first); the sentinels would otherwise convert it only after
// several seconds, and until then no 202 can wait for a replica.
func (s *Sentinel) Rejoin(old, master *Node) {
	s.tb.Helper()
	old.args = append(s.dataArgs(old.Port, old.Dir), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	old.Start()
}

// WaitSettled waits until the set-up is whole again around master: the
// restarted old master has become its in-sync replica and every sentinel
// knows it.
func (s *Sentinel) WaitSettled(master *Node) {
	s.tb.Helper()
	testwait.UntilNil(s.tb, 60*time.Second, func() error { return s.settled(master.Addr) })
}

// dataArgs are a data node's arguments, with its passwords.
func (s *Sentinel) dataArgs(port int, dir string) []string {
	args := dataArgs(port, dir)
	if p := s.opts.Password; p != "" {
		args = append(args, "--requirepass", p, "--masterauth", p)
	}
	return args
}
