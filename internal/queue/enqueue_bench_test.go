package queue_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/test/redistest"
)

// BenchmarkEnqueue measures what one enqueue costs redis-server, which is
// single-threaded and so bounds the whole gateway's accept rate: its CPU
// time (INFO cpu), the commands it runs, those inside the script included
// (INFO commandstats), the client round trips, and the bytes appended to
// its AOF (appendonly yes, appendfsync everysec, as the load test runs
// it). Messages are ~2 KB, half of them with an idempotency key, sent by
// 64 concurrent callers: "single" with Enqueue (concurrent calls grouped
// into pipelines), "single-ungrouped" with Enqueue and Options.NoGrouping
// (one round trip each), "many100" with EnqueueMany, 100 at a time. b.N
// counts messages; rtts/msg counts the client's round trips.
//
//	go test ./internal/queue -run '^$' -bench Enqueue -benchtime 20000x
func BenchmarkEnqueue(b *testing.B) {
	srv := redistest.StartWith(b, redistest.Options{Args: []string{
		"--appendonly", "yes", "--appendfsync", "everysec", "--auto-aof-rewrite-percentage", "0"}})
	rdb := srv.Client()
	body := []byte(strings.Repeat("Disk /var is 97% full on db-17; 1.2 GB left, growing 4 GB a day.\r\n", 30))
	msg := func(i int64) queue.Message {
		m := message(string(body))
		m.ID = queue.NewID(time.Now())
		m.Limits = queue.Limits{RouteMessages: 100000, RouteBytes: 1 << 30}
		if i%2 == 0 {
			m.IdempotencyKey = "k" + strconv.FormatInt(i, 10)
		}
		return m
	}
	measure := func(b *testing.B, opts queue.Options, per int) {
		b.Helper()
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64})
		defer c.Close()
		var open sync.WaitGroup
		for range 64 { // the connections, opened before counting
			open.Add(1)
			go func() {
				defer open.Done()
				if err := c.Ping(b.Context()).Err(); err != nil {
					b.Error(err)
				}
			}()
		}
		open.Wait()
		trips := &tripCounter{}
		c.AddHook(trips)
		q := queue.New(c, opts)
		if err := rdb.FlushAll(b.Context()).Err(); err != nil {
			b.Fatal(err)
		}
		if err := rdb.ConfigResetStat(b.Context()).Err(); err != nil {
			b.Fatal(err)
		}
		cpu0, aof0 := info(b, rdb, "cpu", "used_cpu_sys", "used_cpu_user"), info(b, rdb, "persistence", "aof_current_size")
		var n atomic.Int64
		b.ResetTimer()
		var wg sync.WaitGroup
		for range 64 { // 64 callers on 2 CPUs
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					first := n.Add(int64(per)) - int64(per)
					if first >= int64(b.N) {
						return
					}
					if per == 1 {
						if _, _, err := q.Enqueue(b.Context(), msg(first)); err != nil {
							b.Error(err)
							return
						}
						continue
					}
					ms := make([]queue.Message, min(int64(per), int64(b.N)-first))
					for i := range ms {
						ms[i] = msg(first + int64(i))
					}
					for _, r := range q.EnqueueMany(b.Context(), ms) {
						if r.Err != nil {
							b.Error(r.Err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		msgs := float64(b.N)
		cpu := info(b, rdb, "cpu", "used_cpu_sys", "used_cpu_user") - cpu0
		aof := info(b, rdb, "persistence", "aof_current_size") - aof0
		calls, scripts := commandCalls(b, rdb)
		b.ReportMetric(cpu*1e6/msgs, "redis-cpu-µs/msg")
		b.ReportMetric(float64(calls)/msgs, "redis-cmds/msg")
		b.ReportMetric(float64(scripts)/msgs, "scripts/msg")
		b.ReportMetric(float64(trips.n.Load())/msgs, "rtts/msg")
		b.ReportMetric(aof/msgs, "aof-B/msg")
		b.ReportMetric(msgs/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("single", func(b *testing.B) { measure(b, queue.Options{}, 1) })
	b.Run("single-ungrouped", func(b *testing.B) { measure(b, queue.Options{NoGrouping: true}, 1) })
	b.Run("many100", func(b *testing.B) { measure(b, queue.Options{}, 100) })
}

// tripCounter counts a client's round trips: commands and pipelines.
type tripCounter struct{ n atomic.Int64 }

func (*tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// info sums the named numeric fields of an INFO section.
func info(tb testing.TB, rdb *redis.Client, section string, fields ...string) float64 {
	tb.Helper()
	text, err := rdb.Info(tb.Context(), section).Result()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(text, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		for _, f := range fields {
			if k == f {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatalf("INFO %s %s: %v", section, line, err)
				}
				sum += x
			}
		}
	}
	return sum
}

// commandCalls counts the commands redis-server ran since CONFIG RESETSTAT,
// those of scripts included, and the scripts (EVAL, EVALSHA) among them.
func commandCalls(tb testing.TB, rdb *redis.Client) (total, scripts int) {
	tb.Helper()
	text, err := rdb.Info(tb.Context(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(text, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") || name == "info" || name == "config|resetstat" {
			continue
		}
		var calls int
		if _, err := fmt.Sscanf(rest, "calls=%d,", &calls); err != nil {
			tb.Fatalf("INFO commandstats %s: %v", line, err)
		}
		total += calls
		if name == "evalsha" || name == "eval" {
			scripts += calls
		}
	}
	return total, scripts
}
