package bodybudget

import (
	"fmt"
	"slices"
	"testing"
)

func TestReserve(t *testing.T) {
	t.Parallel()
	b := New(100, 100)
	r1, why := b.Reserve("a", 60)
	if why != OK {
		t.Fatal("60 of 100 refused")
	}
	if _, why := b.Reserve("b", 41); why != Full {
		t.Fatalf("41 more over 100: %v, want Full", why)
	}
	r2, why := b.Reserve("b", 40)
	if why != OK {
		t.Fatal("40 more refused though they fit")
	}
	r1()
	r1() // a second release gives nothing back twice
	if _, why := b.Reserve("a", 1000); why != Full {
		t.Fatal("a body larger than the budget admitted while another is in flight")
	}
	r2()
	big, why := b.Reserve("a", 1000)
	if why != OK {
		t.Fatal("a body larger than the budget refused though it would be alone")
	}
	big()
	if all, _ := b.InUse("a"); all != 0 {
		t.Fatalf("%d bytes still reserved after every release", all)
	}
	if got := New(400, 0); got.PerApp() != 100 {
		t.Fatalf("share 0 means %d, want a quarter of 400", got.PerApp())
	}
}

// One app's share of the budget is its own: past it that app is refused
// while another app still fits, and an app alone may take a body larger
// than its share.
func TestAppShare(t *testing.T) {
	t.Parallel()
	b := New(100, 30)
	var seen []string
	b.Observe(func(app string, n int64) { seen = append(seen, fmt.Sprintf("%s=%d", app, n)) })
	ra, why := b.Reserve("greedy", 20)
	if why != OK {
		t.Fatal("20 of a 30 share refused")
	}
	if _, why := b.Reserve("greedy", 11); why != AppShare {
		t.Fatalf("greedy over its share: %v, want AppShare", why)
	}
	rb, why := b.Reserve("polite", 30)
	if why != OK {
		t.Fatalf("another app refused while the budget has room: %v", why)
	}
	ra()
	big, why := b.Reserve("greedy", 50)
	if why != OK {
		t.Fatalf("an app alone refused a body larger than its share: %v", why)
	}
	if all, mine := b.InUse("greedy"); all != 80 || mine != 50 {
		t.Fatalf("in use %d (greedy %d), want 80 (50)", all, mine)
	}
	big()
	rb()
	want := []string{"greedy=20", "polite=30", "greedy=0", "greedy=50", "greedy=0", "polite=0"}
	if !slices.Equal(seen, want) {
		t.Fatalf("observed %v, want %v", seen, want)
	}
}

// A growing reservation takes the budget a megabyte at a time, falls back
// to the exact need when a whole step does not fit, and gives it all back.
func TestReservationGrows(t *testing.T) {
	t.Parallel()
	b := New(3*growStep+10, 3*growStep+10)
	r := b.Grower("scanner")
	if why := r.Grow(100); why != OK {
		t.Fatal(why)
	}
	if all, _ := b.InUse("scanner"); all != growStep {
		t.Fatalf("after 100 bytes %d reserved, want one step (%d)", all, growStep)
	}
	if why := r.Grow(growStep); why != OK {
		t.Fatal(why)
	}
	if all, _ := b.InUse("scanner"); all != growStep {
		t.Fatalf("growing within what is held reserved more: %d", all)
	}
	if why := r.Grow(3*growStep + 5); why != OK {
		t.Fatalf("a need that fits only without a whole step: %v", why)
	}
	if all, _ := b.InUse("scanner"); all != 3*growStep+5 {
		t.Fatalf("%d reserved, want exactly the need %d", all, 3*growStep+5)
	}
	other := b.Grower("other")
	if why := other.Grow(5); why != OK {
		t.Fatalf("the last 5 bytes refused: %v", why)
	}
	if why := other.Grow(growStep); why != Full {
		t.Fatalf("past the budget: %v, want Full", why)
	}
	r.Release()
	other.Release()

	// Alone, a reservation may take the whole budget and then grow past it.
	small := New(100, 100)
	alone := small.Grower("scanner")
	if why := alone.Grow(250); why != OK {
		t.Fatalf("a body larger than the budget, alone: %v", why)
	}
	if all, _ := small.InUse("scanner"); all != 100 {
		t.Fatalf("%d reserved, want the whole budget (100)", all)
	}
	if _, why := small.Reserve("other", 1); why != Full {
		t.Fatalf("another body while one holds the whole budget: %v, want Full", why)
	}
	alone.Release()
	if all, _ := b.InUse("scanner"); all != 0 {
		t.Fatalf("%d bytes reserved after Release", all)
	}
}
