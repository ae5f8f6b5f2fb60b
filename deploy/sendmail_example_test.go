package deploy

import (
	"testing"

	"github.com/mailgate/mailgate/internal/sendmail"
)

// TestSendmailConfExampleLoads keeps sendmail.conf.example loadable by the
// command that reads it.
func TestSendmailConfExampleLoads(t *testing.T) {
	t.Parallel()
	c, err := sendmail.LoadConf("sendmail.conf.example", true, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.URL == "" || c.TokenFile == "" || c.SpoolDir == "" || c.LocalDomain == "" {
		t.Errorf("the example leaves out a key: %+v", c)
	}
	if got, err := c.Qualify("root"); err != nil || len(got) != 1 || got[0] != "ops@contoso.com" {
		t.Errorf("alias root: %q, %v", got, err)
	}
}
