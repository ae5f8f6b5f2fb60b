package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/queue"
)

// CodeNotScheduled is a DELETE of a message that is no longer scheduled:
// a worker has taken it, it was sent, or it was cancelled already.
const CodeNotScheduled = "not_scheduled"

// cancelMessage is DELETE /v1/messages/{id}: it cancels the app's
// scheduled message while no worker has taken it, and answers with the
// message's status. Another app's id is a 404, as for GET.
func (s *Server) cancelMessage(c *echo.Context) error {
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
		err := s.queue.Cancel(ctx, route, app.id, id)
		if errors.Is(err, queue.ErrNotFound) {
			continue
		}
		var ns *queue.ErrNotScheduled
		if errors.As(err, &ns) {
			return problem(http.StatusConflict, CodeNotScheduled, "Not scheduled",
				"the message is "+ns.Status+"; only a scheduled message can be cancelled")
		}
		if err != nil {
			s.log.Error("cannot cancel a message", "id", id, "err", err)
			return errQueueUnavailable()
		}
		s.log.Info("scheduled message cancelled", "app", app.id, "id", id)
		st, err := s.queue.Get(ctx, route, id)
		if err != nil {
			s.log.Error("cannot read message status", "id", id, "err", err)
			return errQueueUnavailable()
		}
		return c.JSON(http.StatusOK, st)
	}
	return errNotFound()
}

// appRoutes are the routes where an app's message may be: its own first,
// then the others, for messages queued before the app was moved.
func (s *Server) appRoutes(app *appPolicy) []string {
	routes := []string{app.route}
	for _, r := range s.cfg.Routes {
		if r.Name != app.route {
			routes = append(routes, r.Name)
		}
	}
	return routes
}
