// Package bodybudget bounds the message bodies a mailgate process holds in
// memory at once, overall and per app, across every door (the HTTP API and
// the SMTP door share one Budget).
//
// Each submission reserves its body's size before it is read: the HTTP API
// reserves a request's Content-Length (or, without one, the most it will
// read) at once; the SMTP door, whose clients rarely announce a size,
// reserves as the message arrives (Reservation). A submission holds about
// three times its body while it is handled (the body, decoded attachments,
// the rendered message), so the budget bounds the heap of the submissions
// in flight at about three times it.
//
// A reservation that does not fit is refused at once rather than queued: a
// waiting request would hold its connection and its unread body in the
// kernel's buffers, and clients retry anyway. Refusals say which bound
// refused: the whole budget (the server is busy) or the app's own share
// (that app is sending too much at once), so one app whose clients stall
// or send huge bodies cannot starve the others. A body larger than the
// budget (or the share) is admitted when it would be the only one in
// flight (of the app), so a small budget never refuses a message the app's
// limits allow.
package bodybudget

import "sync"

// DefaultAppShare is the part of the budget one app may hold when no share
// is given: a quarter, so that one misbehaving app leaves three quarters to
// everyone else.
const DefaultAppShare = 4

// Refusal says which bound refused a reservation.
type Refusal int

// The answers of Reserve.
const (
	OK       Refusal = iota
	Full             // the whole budget
	AppShare         // the app's share
)

// Budget is the bytes of bodies in flight, overall and by app.
type Budget struct {
	max, perApp int64

	mu   sync.Mutex
	used int64
	apps map[string]int64 // bytes in flight per app; absent when none

	observe func(app string, bytes int64)
}

// New returns a budget of max bytes, perApp of them for one app (0 means a
// DefaultAppShare-th of max).
func New(max, perApp int64) *Budget {
	if perApp <= 0 {
		perApp = max / DefaultAppShare
	}
	return &Budget{max: max, perApp: min(perApp, max), apps: map[string]int64{},
		observe: func(string, int64) {}}
}

// Observe sets a function told an app's bytes in flight after each change
// (for metrics). Set it before the budget is used.
func (b *Budget) Observe(fn func(app string, bytes int64)) { b.observe = fn }

// Max is the whole budget, PerApp one app's share.
func (b *Budget) Max() int64    { return b.max }
func (b *Budget) PerApp() int64 { return b.perApp }

// Reserve takes n bytes of the budget for app if they fit and returns the
// function that gives them back (safe to call more than once).
func (b *Budget) Reserve(app string, n int64) (release func(), why Refusal) {
	n = min(max(n, 0), b.max)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return nil, Full
	}
	mine := b.apps[app]
	if mine > 0 && mine+n > b.perApp {
		return nil, AppShare
	}
	b.used += n
	b.apps[app] = mine + n
	b.observe(app, mine+n)
	return sync.OnceFunc(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.used -= n
		left := b.apps[app] - n
		if left == 0 {
			delete(b.apps, app)
		} else {
			b.apps[app] = left
		}
		b.observe(app, left)
	}), OK
}

// InUse reports the bytes reserved overall and by app.
func (b *Budget) InUse(app string) (all, mine int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.apps[app]
}

// growStep is how much a Reservation takes at a time beyond what it needs,
// so a message arriving in small writes costs a lock every megabyte, not
// every write.
const growStep = 1 << 20

// Reservation is a reservation that grows with a body of unknown size. Its
// zero value is not usable; make one with Budget.Grower.
type Reservation struct {
	b        *Budget
	app      string
	held     int64
	releases []func()
}

// Grower returns an empty Reservation of app's.
func (b *Budget) Grower(app string) *Reservation { return &Reservation{b: b, app: app} }

// Grow makes the reservation hold at least total bytes, reserving in steps
// of a megabyte; it reports the refusal when the budget cannot give them.
// A reservation never holds more than the whole budget: one that holds it
// all is alone in flight and may grow without bound, as Reserve admits a
// body larger than the budget when it is alone.
func (r *Reservation) Grow(total int64) Refusal {
	if total <= r.held || r.held >= r.b.max {
		return OK
	}
	room := r.b.max - r.held
	want := min(max(total-r.held, growStep), room)
	release, why := r.b.Reserve(r.app, want)
	if why != OK {
		// A whole step may be what does not fit; the need itself may.
		need := min(total-r.held, room)
		if need == want {
			return why
		}
		if release, why = r.b.Reserve(r.app, need); why != OK {
			return why
		}
		want = need
	}
	r.held += want
	r.releases = append(r.releases, release)
	return OK
}

// Release gives back everything the reservation holds.
func (r *Reservation) Release() {
	for _, release := range r.releases {
		release()
	}
	r.releases, r.held = nil, 0
}
