// Command lbbench is the Go client's row in benchmarks/compare.py: it publishes
// to (or consumes from) a Liftbridge stream with go-liftbridge and prints one
// JSON object with the same keys as `pyliftbridge bench --json`, so both sides
// of the comparison are measured the same way.
//
//	lbbench -brokers 127.0.0.1:9292 -stream s -mode publish -messages 100000 -size 256
//
// Modes: publish (PublishAsync with at most -window acks outstanding), sync
// (Publish, one message at a time: the latency mode), consume (read -messages
// messages from the earliest offset of every partition of an existing stream).
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	lift "github.com/liftbridge-io/go-liftbridge/v2"
)

type options struct {
	brokers    string
	stream     string
	mode       string
	messages   int
	size       int
	window     int
	partitions int
	keys       int
	ackPolicy  string
	ackTimeout time.Duration
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	toSeconds := func(tv syscall.Timeval) float64 {
		return float64(tv.Sec) + float64(tv.Usec)/1e6
	}
	return toSeconds(usage.Utime) + toSeconds(usage.Stime)
}

func percentiles(latencies []time.Duration) map[string]float64 {
	out := map[string]float64{"p50": 0, "p90": 0, "p99": 0, "p99_9": 0, "max": 0}
	if len(latencies) == 0 {
		return out
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(latencies)-1))
		return float64(latencies[i]) / float64(time.Millisecond)
	}
	out["p50"], out["p90"], out["p99"], out["p99_9"] = at(0.50), at(0.90), at(0.99), at(0.999)
	out["max"] = float64(latencies[len(latencies)-1]) / float64(time.Millisecond)
	return out
}

func messageOptions(o options, i int) []lift.MessageOption {
	var opts []lift.MessageOption
	switch o.ackPolicy {
	case "all":
		opts = append(opts, lift.AckPolicyAll())
	case "none":
		opts = append(opts, lift.AckPolicyNone())
	default:
		opts = append(opts, lift.AckPolicyLeader())
	}
	if o.partitions > 1 {
		opts = append(opts, lift.Key([]byte(fmt.Sprintf("key-%d", i%o.keys))), lift.PartitionByKey())
	}
	return opts
}

func publish(ctx context.Context, client lift.Client, o options, value []byte) (map[string]any, error) {
	var (
		slots     = make(chan struct{}, o.window)
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, o.messages)
		failures  int64
		firstErr  atomic.Value
	)
	cpu0, start := cpuSeconds(), time.Now()
	for i := 0; i < o.messages; i++ {
		slots <- struct{}{}
		wg.Add(1)
		sent := time.Now()
		handler := func(ack *lift.Ack, err error) {
			took := time.Since(sent)
			if err != nil {
				atomic.AddInt64(&failures, 1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				mu.Lock()
				latencies = append(latencies, took)
				mu.Unlock()
			}
			<-slots
			wg.Done()
		}
		if o.ackPolicy == "none" {
			if _, err := client.Publish(ctx, o.stream, value, messageOptions(o, i)...); err != nil {
				return nil, err
			}
			<-slots
			wg.Done()
			continue
		}
		if err := client.PublishAsync(ctx, o.stream, value, handler, messageOptions(o, i)...); err != nil {
			return nil, err
		}
	}
	wg.Wait()
	elapsed, cpu := time.Since(start).Seconds(), cpuSeconds()-cpu0
	result := map[string]any{
		"duration": elapsed, "cpu_seconds": cpu, "errors": failures,
		"latency_ms": percentiles(latencies),
	}
	if e := firstErr.Load(); e != nil {
		result["first_error"] = e
	}
	return result, nil
}

func publishSync(ctx context.Context, client lift.Client, o options, value []byte) (map[string]any, error) {
	latencies := make([]time.Duration, 0, o.messages)
	cpu0, start := cpuSeconds(), time.Now()
	for i := 0; i < o.messages; i++ {
		sent := time.Now()
		if _, err := client.Publish(ctx, o.stream, value, messageOptions(o, i)...); err != nil {
			return nil, err
		}
		latencies = append(latencies, time.Since(sent))
	}
	elapsed, cpu := time.Since(start).Seconds(), cpuSeconds()-cpu0
	return map[string]any{
		"duration": elapsed, "cpu_seconds": cpu, "errors": 0,
		"latency_ms": percentiles(latencies),
	}, nil
}

func consume(ctx context.Context, client lift.Client, o options) (map[string]any, error) {
	metadata, err := client.FetchMetadata(ctx)
	if err != nil {
		return nil, err
	}
	stream := metadata.GetStream(o.stream)
	if stream == nil {
		return nil, fmt.Errorf("no stream %q", o.stream)
	}
	var received int64
	done := make(chan struct{})
	var once sync.Once
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpu0, start := cpuSeconds(), time.Now()
	for partition := range stream.Partitions() {
		err := client.Subscribe(subCtx, o.stream, func(msg *lift.Message, err error) {
			if err != nil {
				return
			}
			if atomic.AddInt64(&received, 1) == int64(o.messages) {
				once.Do(func() { close(done) })
			}
		}, lift.StartAtEarliestReceived(), lift.Partition(partition))
		if err != nil {
			return nil, err
		}
	}
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		return nil, fmt.Errorf("received %d of %d messages", atomic.LoadInt64(&received), o.messages)
	}
	elapsed, cpu := time.Since(start).Seconds(), cpuSeconds()-cpu0
	return map[string]any{"duration": elapsed, "cpu_seconds": cpu, "errors": 0}, nil
}

func run(o options) (map[string]any, error) {
	ctx := context.Background()
	client, err := lift.Connect([]string{o.brokers}, lift.AckWaitTime(o.ackTimeout))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	if o.mode != "consume" {
		err := client.CreateStream(ctx, o.stream, o.stream, lift.Partitions(int32(o.partitions)))
		if err != nil && !errors.Is(err, lift.ErrStreamExists) {
			return nil, err
		}
	}
	value := make([]byte, o.size)
	if _, err := rand.Read(value); err != nil {
		return nil, err
	}
	var result map[string]any
	switch o.mode {
	case "publish":
		result, err = publish(ctx, client, o, value)
	case "sync":
		result, err = publishSync(ctx, client, o, value)
	case "consume":
		result, err = consume(ctx, client, o)
	default:
		err = fmt.Errorf("unknown mode %q", o.mode)
	}
	if err != nil {
		return nil, err
	}
	seconds := result["duration"].(float64)
	result["mode"] = o.mode
	result["client"] = "go-liftbridge v2.3.0"
	result["implementation"] = runtime.Version()
	result["messages"] = o.messages
	result["message_size"] = o.size
	result["ack_policy"] = o.ackPolicy
	result["window"] = o.window
	result["partitions"] = o.partitions
	result["messages_per_second"] = float64(o.messages) / seconds
	result["mb_per_second"] = float64(o.messages*o.size) / seconds / 1e6
	return result, nil
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "127.0.0.1:9292", "broker address")
	flag.StringVar(&o.stream, "stream", "bench", "stream name (also its subject)")
	flag.StringVar(&o.mode, "mode", "publish", "publish, sync or consume")
	flag.IntVar(&o.messages, "messages", 100000, "messages to publish or consume")
	flag.IntVar(&o.size, "size", 256, "message size in bytes")
	flag.IntVar(&o.window, "window", 1024, "publishes awaiting their ack at most")
	flag.IntVar(&o.partitions, "partitions", 1, "partitions (more than 1: keys with the key partitioner)")
	flag.IntVar(&o.keys, "keys", 1000, "distinct keys when partitioning by key")
	flag.StringVar(&o.ackPolicy, "ack-policy", "leader", "leader, all or none")
	flag.DurationVar(&o.ackTimeout, "ack-timeout", 10*time.Second, "ack timeout")
	flag.Parse()
	result, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbbench:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}
