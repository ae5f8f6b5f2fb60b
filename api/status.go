package api

import (
	"errors"
	"net/http"
	"sort"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/config"
	"github.com/mailgate/mailgate/internal/queue"
)

func errNotFound() *Problem {
	return problem(http.StatusNotFound, CodeNotFound, "Not found", "no message with this id for this app")
}

// getMessage shows a message to the app that sent it. Another app's id is
// a 404, exactly as an unknown one, so ids reveal nothing.
func (s *Server) getMessage(c *echo.Context) error {
	app, err := requireApp(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !queue.ValidID(id) {
		return errNotFound()
	}
	ctx, cancel := withTimeout(c.Request().Context())
	defer cancel()
	for _, route := range s.appRoutes(app) {
		st, err := s.queue.Get(ctx, route, id)
		if errors.Is(err, queue.ErrNotFound) {
			continue
		}
		if err != nil {
			s.log.Error("cannot read message status", "id", id, "err", err)
			return errQueueUnavailable()
		}
		if st.App != app.id {
			return errNotFound()
		}
		return c.JSON(http.StatusOK, st)
	}
	return errNotFound()
}

// routeView is one route in GET /v1/routes.
type routeView struct {
	Name   string      `json:"name"`
	Type   string      `json:"type"`
	State  string      `json:"state"`
	Reason string      `json:"reason,omitempty"`
	Since  string      `json:"since,omitempty"`
	Limits routeLimits `json:"limits"`
	// Usage is the use of the limits now, summed over the route's
	// mailboxes when there are several (Mailboxes has each).
	Usage     *routeUsage    `json:"usage,omitempty"`
	Mailboxes []mailboxUsage `json:"mailboxes,omitempty"`
	Queue     queueDepth     `json:"queue"`
}

type routeUsage struct {
	Connections        int `json:"connections"`
	MessagesLastMinute int `json:"messages_last_minute"`
	RecipientsLastDay  int `json:"recipients_last_day"`
}

type mailboxUsage struct {
	Mailbox string `json:"mailbox"`
	routeUsage
}

type routeLimits struct {
	MessagesPerMinute int `json:"messages_per_minute"`
	MaxConnections    int `json:"max_connections"`
	RecipientsPerDay  int `json:"recipients_per_day"`
}

type queueDepth struct {
	Waiting int64 `json:"waiting"`
	Sending int64 `json:"sending"`
	Failed  int64 `json:"failed"`
	// Bytes of the waiting and sending messages; with them Messages
	// (waiting + sending) is what the route's queue limit bounds.
	Bytes       int64 `json:"bytes"`
	MaxMessages int64 `json:"max_messages"`
	MaxBytes    int64 `json:"max_bytes"`
	// Full is true while new submissions are refused with 503 queue_full.
	Full bool `json:"full"`
	// App is the calling app's share, shown to an app only.
	App *queueShare `json:"app,omitempty"`
}

// queueShare is one app's use of its share of a route's queue.
type queueShare struct {
	Messages    int64 `json:"messages"`
	Bytes       int64 `json:"bytes"`
	MaxMessages int64 `json:"max_messages"`
	MaxBytes    int64 `json:"max_bytes"`
	// Full is true while the app's submissions are refused with 429
	// app_queue_full.
	Full bool `json:"full"`
}

// listRoutes shows an app its own route, and an admin every route.
func (s *Server) listRoutes(c *echo.Context) error {
	ctx, cancel := withTimeout(c.Request().Context())
	defer cancel()
	app, _ := c.Get(ctxApp).(*appPolicy)
	out := []routeView{}
	for i := range s.cfg.Routes {
		r := &s.cfg.Routes[i]
		if !isAdmin(c) && (app == nil || app.route != r.Name) {
			continue
		}
		v := routeView{Name: r.Name, Type: r.Type, State: "ok", Limits: routeLimits{
			MessagesPerMinute: r.Limits.MessagesPerMinute, MaxConnections: r.Limits.MaxConnections,
			RecipientsPerDay: r.Limits.RecipientsPerDay}}
		if s.health != nil {
			held, reason, since, err := s.health.State(ctx, r.Name)
			if err != nil {
				return errQueueUnavailable()
			}
			if held {
				v.State, v.Reason, v.Since = "held", reason, since.UTC().Format(timeFormat)
			}
		}
		if s.usage != nil {
			per, err := s.usage(ctx, r.Name)
			if err != nil {
				return errQueueUnavailable()
			}
			v.Usage = &routeUsage{}
			for _, name := range sortedKeys(per) {
				u := per[name]
				ru := routeUsage{Connections: u.Connections, MessagesLastMinute: u.MessagesLastMinute, RecipientsLastDay: u.RecipientsLastDay}
				v.Usage.Connections += ru.Connections
				v.Usage.MessagesLastMinute += ru.MessagesLastMinute
				v.Usage.RecipientsLastDay += ru.RecipientsLastDay
				if r.Auth.Username == config.FromMailbox {
					v.Mailboxes = append(v.Mailboxes, mailboxUsage{Mailbox: name, routeUsage: ru})
				}
			}
		}
		d, err := s.queue.Depth(ctx, r.Name)
		if err != nil {
			return errQueueUnavailable()
		}
		n := d.Ready + d.InFlight
		v.Queue = queueDepth{Waiting: d.Ready, Sending: d.InFlight, Failed: d.Failed, Bytes: d.Bytes,
			MaxMessages: r.Queue.MaxMessages, MaxBytes: r.Queue.MaxBytes,
			Full: queue.Full(n, d.Bytes, r.Queue.MaxMessages, r.Queue.MaxBytes)}
		if !isAdmin(c) && app != nil {
			m, b, err := s.queue.AppWaiting(ctx, r.Name, app.id)
			if err != nil {
				return errQueueUnavailable()
			}
			l := app.QueueLimits()
			v.Queue.App = &queueShare{Messages: m, Bytes: b, MaxMessages: l.AppMessages, MaxBytes: l.AppBytes,
				Full: queue.Full(m, b, l.AppMessages, l.AppBytes)}
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, map[string]any{"routes": out})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

const timeFormat = "2006-01-02T15:04:05Z07:00"
