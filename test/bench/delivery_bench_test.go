package bench

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/gateway"
	"github.com/mailgate/mailgate/test/testbin"
	"github.com/mailgate/mailgate/test/testwait"
)

// BenchmarkDeliveryThroughput measures how fast the workers of one route
// empty a queue of b.N typical (~2 KB) messages into the simulator: a real
// redis-server, SMTP over loopback with STARTTLS and AUTH LOGIN. The
// messages are queued before the timer starts; the timer covers the workers
// from their start (first connections included) to the last recorded
// outcome.
//
// With reuse each worker keeps one connection for all its messages (RSET
// between transactions); without it (idle_timeout 1ns) every message pays a
// TCP connection, EHLO, a TLS handshake, AUTH LOGIN and QUIT, which is what
// a relay that does not reuse connections costs. conns/msg shows which one
// ran.
//
// The sink variants deliver instead to Postfix's smtp-sink (type smtp,
// plain text, no AUTH, a separate C process that accepts everything and
// offers PIPELINING): what is left is mailgate's own cost, without the
// simulator's share of this process's CPU or TLS. The rtt variants reach
// the simulator through a relay that delays every chunk by half the round
// trip time in each direction: on loopback an SMTP round trip costs CPU,
// on the way to Exchange Online it costs mostly waiting.
//
// Allocations are those of the whole process: workers, go-redis, and the
// simulator's server side of every SMTP session; so is cpu-µs/msg (this
// process's CPU time per message, getrusage), which moves far less than
// msgs/s on a machine shared with other work.
func BenchmarkDeliveryThroughput(b *testing.B) {
	for _, c := range []struct {
		name    string
		workers int
		idle    time.Duration
		sink    bool
		rtt     time.Duration
	}{
		{name: "reuse/workers=8", workers: 8, idle: time.Hour},
		{name: "reuse/workers=3", workers: 3, idle: time.Hour}, // Exchange Online's connections per mailbox
		{name: "noreuse/workers=8", workers: 8, idle: time.Nanosecond},
		{name: "sink/workers=8", workers: 8, idle: time.Hour, sink: true},
		{name: "sink/workers=3", workers: 3, idle: time.Hour, sink: true},
		{name: "rtt2ms/workers=8", workers: 8, idle: time.Hour, rtt: 2 * time.Millisecond},
		{name: "rtt2ms/workers=3", workers: 3, idle: time.Hour, rtt: 2 * time.Millisecond},
	} {
		b.Run(c.name, func(b *testing.B) { benchDelivery(b, c.workers, c.idle, c.sink, c.rtt) })
	}
}

func benchDelivery(b *testing.B, workers int, idle time.Duration, sink bool, rtt time.Duration) {
	s := newSetup(b, workers, idle)
	switch {
	case sink:
		host, port := startSMTPSink(b)
		s.cfg.Routes[0] = config.Route{Name: routeName, Type: config.RouteSMTP, Host: host, Port: port,
			TLS: config.RouteTLS{Mode: config.TLSNone}, Limits: s.cfg.Routes[0].Limits}
	case rtt > 0:
		s.cfg.Routes[0].Port = startDelayRelay(b, s.sim.Host(), s.sim.Port(), rtt/2)
	}
	out := newOutcomes()
	rt := &roundTrips{}
	r := s.buildWith(b, gateway.RoleWorker, out.hooks(), rt)
	size := enqueue(b, r.g.Queue(), b.N)
	b.ReportAllocs()
	rdb := s.redis.Client()
	if err := rdb.ConfigResetStat(b.Context()).Err(); err != nil {
		b.Fatal(err)
	}
	redisCPU0 := redisCPU(b, rdb)
	rt.reset()
	cpu0 := processCPU(b)

	b.ResetTimer()
	start := time.Now()
	r.start(b)
	sent, other, ok := out.wait(b.N, time.Minute+time.Duration(b.N)*10*time.Millisecond)
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()

	if len(other) > 0 {
		b.Fatalf("not every message was sent: %d sent, others %v", sent, other)
	}
	if !ok {
		b.Fatalf("%d of %d messages sent after %v", sent, b.N, elapsed)
	}
	st := s.sim.Stats()
	if !sink && st.Messages != b.N {
		b.Fatalf("the simulator accepted %d messages, want %d (replies %v)", st.Messages, b.N, st.Replies)
	}
	cmds, perCmd := redisCalls(b, rdb)
	rtts, byCmd := rt.snapshot()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(cmds)/float64(b.N), "redis-cmds/msg")
	b.ReportMetric(float64(rtts)/float64(b.N), "redis-rtts/msg")
	b.ReportMetric((redisCPU(b, rdb)-redisCPU0).Seconds()*1e6/float64(b.N), "redis-cpu-µs/msg")
	b.Logf("N=%d: round trips by command (first key): %v; commands run by redis-server: %v", b.N, byCmd, perCmd)
	if !sink {
		b.ReportMetric(float64(st.Connections)/float64(b.N), "conns/msg")
	}
	b.ReportMetric(float64(size), "B/msg")
}

// redisCPU is the CPU time redis-server has used (INFO cpu): the share of
// the machine the queue takes, which a profile of this process misses.
func redisCPU(tb testing.TB, rdb *redis.Client) time.Duration {
	tb.Helper()
	info, err := rdb.Info(tb.Context(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("INFO cpu %s: %v", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// redisCalls counts the commands redis-server ran since CONFIG RESETSTAT
// (INFO commandstats), scripts' own commands included: in all and by name.
func redisCalls(tb testing.TB, rdb *redis.Client) (total int, byName map[string]int) {
	tb.Helper()
	info, err := rdb.Info(tb.Context(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	byName = map[string]int{}
	for _, line := range strings.Split(info, "\r\n") {
		// cmdstat_evalsha:calls=3,usec=...
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") || name == "info" || name == "config|resetstat" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			tb.Fatalf("INFO commandstats %s: %v", line, err)
		}
		byName[name] = n
		total += n
	}
	return total, byName
}

// startSMTPSink runs Postfix's smtp-sink on a free loopback port until the
// benchmark ends: it accepts every message and keeps nothing.
func startSMTPSink(tb testing.TB) (host string, port int) {
	tb.Helper()
	bin := testbin.Path(tb, "smtp-sink", "postfix")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	args := []string{addr.String(), "256"} // a listen backlog of 256
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...) // it will not run as root
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testwait.Until(tb, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr.String())
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "smtp-sink to listen on %s (output: %s)", addr, &out)
	return "127.0.0.1", addr.Port
}

// startDelayRelay relays TCP connections on a free loopback port to
// host:port, delivering every chunk oneWay after it was read, in order, in
// both directions. It returns the port.
func startDelayRelay(tb testing.TB, host string, port int, oneWay time.Duration) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	upstream := net.JoinHostPort(host, strconv.Itoa(port))
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); delayCopy(server, client, oneWay) }()
			go func() { defer wg.Done(); delayCopy(client, server, oneWay) }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// delayCopy copies src to dst, each chunk oneWay after it arrived, and
// closes both when either side ends.
func delayCopy(dst, src net.Conn, oneWay time.Duration) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(oneWay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
	for range q { // let the reader finish
	}
}
