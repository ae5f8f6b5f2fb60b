package api

import (
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"
)

// CodeOriginNotAllowed refuses a cross-site request from a browser.
const CodeOriginNotAllowed = "origin_not_allowed"

// checkOrigin refuses the requests a web page on another site could make a
// visitor's browser send: a POST with a form or text body (the CORS-safelisted
// types, which a browser sends cross-site without asking the server first,
// https://fetch.spec.whatwg.org/#cors-safelisted-request-header) carrying an
// Origin header that is not in allowed_origins. The browser would attach
// Basic credentials it has cached for mailgate, and the page could send mail
// as the visitor's app or requeue dead letters. Every other request needs a
// CORS preflight, which mailgate never grants, and clients that are not
// browsers send no Origin, so neither is affected.
func (s *Server) checkOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		origin := r.Header.Get("Origin")
		if origin == "" || r.Method != http.MethodPost || !safelistedBody(r.Header.Get("Content-Type")) || s.allowedOrigin(origin) {
			return next(c)
		}
		return problem(http.StatusForbidden, CodeOriginNotAllowed, "Origin not allowed",
			"a browser request from "+origin+" is refused: that origin is not in allowed_origins")
	}
}

// safelistedBody reports whether a browser may send a body of this type
// cross-site without a preflight. A missing or unparsable type counts too:
// the browser's own choice for a string body is text/plain.
func safelistedBody(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return true
	}
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return true
	}
	return false
}

func (s *Server) allowedOrigin(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}
