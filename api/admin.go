package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/mailgate/mailgate/internal/queue"
	"github.com/mailgate/mailgate/internal/token"
)

// The operator endpoints: dead letters of a route, listed, requeued or
// deleted. They take admin tokens only, and admin tokens take nothing else
// (requireApp), so a leaked app token cannot read other apps' mail and an
// operator's token cannot send.

// CodeMessageInFlight is the problem code for a change refused because a
// worker is delivering the message at that moment.
const CodeMessageInFlight = "message_in_flight"

const (
	defaultFailedLimit = 50
	maxFailedLimit     = 500
	// bulkTimeout bounds a bulk requeue or delete; each batch of
	// queue.BulkBatch messages is one round trip, so this is generous.
	bulkTimeout = time.Minute
)

// registerAdmin adds the operator endpoints under /v1/admin.
func (s *Server) registerAdmin(v1 *echo.Group) {
	g := v1.Group("/admin", s.requireAdmin)
	g.GET("/routes/:route/failed", s.listFailed)
	g.POST("/routes/:route/failed/requeue", s.requeueAll)
	g.POST("/routes/:route/failed/:id/requeue", s.requeue)
	g.DELETE("/routes/:route/failed", s.deleteAllFailed)
	g.DELETE("/routes/:route/messages/:id", s.deleteMessage)
}

// requireAdmin refuses every token but an admin token.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if !isAdmin(c) {
			return problem(http.StatusForbidden, CodeForbidden, "Forbidden",
				"this operation needs an admin token (mailgate token issue --admin NAME)")
		}
		return next(c)
	}
}

// adminMessage is a message as an operator sees it: the status an app
// sees, and which app sent it.
type adminMessage struct {
	*queue.Status
	App string `json:"app"`
}

func newAdminMessage(st *queue.Status) adminMessage { return adminMessage{Status: st, App: st.App} }

// adminRoute returns the configured route named in the path.
func (s *Server) adminRoute(c *echo.Context) (string, error) {
	name := c.Param("route")
	if s.cfg.Route(name) == nil {
		return "", problem(http.StatusNotFound, CodeNotFound, "Not found", "no route "+strconv.Quote(name))
	}
	return name, nil
}

func errAdminQueue() *Problem {
	return problem(http.StatusServiceUnavailable, CodeQueueUnavailable, "Queue unavailable",
		"Redis did not answer; the operation may not have been done, or only partly: list the failed messages to see")
}

func errNoFailed(id string) *Problem {
	return problem(http.StatusNotFound, CodeNotFound, "Not found",
		"no failed message "+id+" on this route that can be requeued (it may have been requeued, deleted or expired)")
}

func (s *Server) operator(c *echo.Context) string {
	if cl, ok := c.Get(ctxClaims).(*token.Claims); ok {
		return cl.Subject
	}
	return ""
}

func (s *Server) listFailed(c *echo.Context) error {
	route, err := s.adminRoute(c)
	if err != nil {
		return err
	}
	limit := defaultFailedLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxFailedLimit {
			return errValidation("limit must be a whole number from 1 to "+strconv.Itoa(maxFailedLimit),
				FieldError{Field: "limit", Message: "not a whole number from 1 to " + strconv.Itoa(maxFailedLimit)})
		}
		limit = n
	}
	ctx, cancel := withTimeout(c.Request().Context())
	defer cancel()
	page, next, err := s.queue.ListFailed(ctx, route, limit, c.QueryParam("cursor"))
	if errors.Is(err, queue.ErrBadCursor) {
		return errValidation("cursor must be a next_cursor of an earlier answer",
			FieldError{Field: "cursor", Message: "not a cursor this server returned"})
	}
	if err != nil {
		s.log.Error("cannot list failed messages", "route", route, "err", err)
		return errAdminQueue()
	}
	out := struct {
		Messages   []adminMessage `json:"messages"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}{Messages: make([]adminMessage, len(page)), NextCursor: next}
	for i := range page {
		out.Messages[i] = newAdminMessage(&page[i])
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) requeue(c *echo.Context) error {
	route, err := s.adminRoute(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	ctx, cancel := withTimeout(c.Request().Context())
	defer cancel()
	err = s.queue.Requeue(ctx, route, id)
	if errors.Is(err, queue.ErrNotFound) {
		return errNoFailed(id)
	}
	if err != nil {
		s.log.Error("cannot requeue", "route", route, "id", id, "err", err)
		return errAdminQueue()
	}
	s.log.Info("failed message requeued", "route", route, "id", id, "operator", s.operator(c))
	st, err := s.queue.Get(ctx, route, id)
	if err != nil {
		// Requeued, but a worker may already have sent it and it may be
		// gone; either way the requeue itself succeeded.
		s.log.Error("cannot read a requeued message", "route", route, "id", id, "err", err)
		return errAdminQueue()
	}
	return c.JSON(http.StatusOK, newAdminMessage(st))
}

func (s *Server) requeueAll(c *echo.Context) error {
	return s.bulk(c, "requeued", s.queue.RequeueAll)
}

// bulk runs one operation on all of a route's failed messages and answers
// {"<done>": n}; done is "requeued" or "deleted".
func (s *Server) bulk(c *echo.Context, done string, op func(context.Context, string) (int, error)) error {
	route, err := s.adminRoute(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), bulkTimeout)
	defer cancel()
	n, err := op(ctx, route)
	if n > 0 {
		s.log.Info("failed messages "+done, "route", route, "count", n, "operator", s.operator(c))
	}
	if err != nil {
		s.log.Error("bulk operation on failed messages stopped", "route", route, done, n, "err", err)
		return errAdminQueue()
	}
	return c.JSON(http.StatusOK, map[string]int{done: n})
}

func (s *Server) deleteMessage(c *echo.Context) error {
	route, err := s.adminRoute(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	ctx, cancel := withTimeout(c.Request().Context())
	defer cancel()
	switch err := s.queue.Delete(ctx, route, id); {
	case errors.Is(err, queue.ErrNotFound):
		return problem(http.StatusNotFound, CodeNotFound, "Not found", "no message "+id+" on this route")
	case errors.Is(err, queue.ErrInFlight):
		return problem(http.StatusConflict, CodeMessageInFlight, "Message being delivered",
			"a worker is delivering this message right now; try again once its attempt is recorded")
	case err != nil:
		s.log.Error("cannot delete", "route", route, "id", id, "err", err)
		return errAdminQueue()
	}
	s.log.Info("message deleted", "route", route, "id", id, "operator", s.operator(c))
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) deleteAllFailed(c *echo.Context) error {
	return s.bulk(c, "deleted", s.queue.DeleteAll)
}
