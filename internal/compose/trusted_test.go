package compose

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Headers that Exchange Online may honour from a trusted connector cannot be
// set by an app, neither as extra headers nor inside a raw message.
func TestTrustedHeadersRefused(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"X-MS-Exchange-Organization-SCL", "x-ms-exchange-crosstenant-id",
		"X-MS-Exchange-Transport-CrossTenantHeadersStamped", "ARC-Seal", "Authentication-Results", "Received-SPF"} {
		_, err := Build(Input{From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x",
			Headers: map[string]string{name: "-1"}}, Options{Now: time.Now(), MessageIDLocal: "id1"})
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != CodeValidationFailed {
			t.Errorf("Build with header %s: %v", name, err)
		}
		raw := "From: a@contoso.com\r\nTo: b@contoso.com\r\n" + name + ": -1\r\nSubject: x\r\n\r\nbody\r\n"
		_, err = ParseRaw([]byte(raw), Options{Now: time.Now(), MessageIDLocal: "id2"})
		if !errors.As(err, &ce) || ce.Code != CodeValidationFailed || !strings.EqualFold(ce.Field, "headers."+name) {
			t.Errorf("ParseRaw with header %s: %v", name, err)
		}
	}
	if _, err := Build(Input{From: "a@contoso.com", To: []string{"b@contoso.com"}, Text: "x",
		Headers: map[string]string{"X-Ticket": "4711", "X-MS-Has-Attach": "yes"}}, Options{Now: time.Now(), MessageIDLocal: "id3"}); err != nil {
		t.Errorf("ordinary X- headers were refused: %v", err)
	}
}
