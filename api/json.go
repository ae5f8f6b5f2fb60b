package api

import (
	"encoding/json"

	"github.com/labstack/echo/v5"
)

// jsonSerializer writes JSON without HTML escaping: addresses such as
// `Alerts <alerts@contoso.com>` read as written, not as \u003c…\u003e. The
// API never serves HTML, so the escaping protects nothing.
type jsonSerializer struct{ echo.DefaultJSONSerializer }

func (jsonSerializer) Serialize(c *echo.Context, target any, indent string) error {
	enc := json.NewEncoder(c.Response())
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(target)
}
