//go:build linux

package daemon

import (
	"testing"
	"time"
)

func TestAggregator(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	a := aggregator{quiet: 20 * time.Millisecond, maxDelay: 200 * time.Millisecond}
	if _, ok := a.due(); ok {
		t.Fatal("a clean path is due")
	}
	a.touch(ms(0))
	if at, _ := a.due(); !at.Equal(ms(20)) {
		t.Errorf("one event: due at %v, want +20ms", at.Sub(t0))
	}
	// A burst of events every 10 ms keeps pushing the quiet period, up to
	// the maximum delay.
	for n := 10; n <= 300; n += 10 {
		a.touch(ms(n))
		at, _ := a.due()
		want := ms(n + 20)
		if n+20 > 200 {
			want = ms(200)
		}
		if !at.Equal(want) {
			t.Fatalf("event at +%dms: due at %v, want %v", n, at.Sub(t0), want.Sub(t0))
		}
	}
	a.reset()
	if a.dirty() {
		t.Error("dirty after reset")
	}
}
