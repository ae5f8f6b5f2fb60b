package exosim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/mailgate/mailgate/test/exosim"
	"github.com/mailgate/mailgate/test/testclock"
)

const (
	appID     = "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
	appSecret = "app-secret~value"
)

// requestToken posts a client-credentials request to the token endpoint and
// returns the status and the decoded JSON body.
func requestToken(t *testing.T, sim *exosim.Sim, tokenURL string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := sim.HTTPClient().PostForm(tokenURL, form)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token response: %v", err)
	}
	return resp.StatusCode, body
}

func secretForm() url.Values {
	return url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {appID},
		"client_secret": {appSecret},
		"scope":         {exosim.OutlookScope},
	}
}

// token gets an access token with the app secret.
func token(t *testing.T, sim *exosim.Sim) string {
	t.Helper()
	status, body := requestToken(t, sim, sim.TokenURL(), secretForm())
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token: %d %v", status, body)
	}
	return tok
}

func TestXOAuth2(t *testing.T) {
	t.Parallel()
	clock := testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	opt := submissionOptions()
	opt.Now = clock.Now
	sim := exosim.Start(t, opt)
	sim.RegisterClientSecret(appID, appSecret)

	status, body := requestToken(t, sim, sim.TokenURL(), secretForm())
	if status != http.StatusOK || body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["ext_expires_in"] != float64(3600) {
		t.Fatalf("token response %d %v", status, body)
	}
	tok := body["access_token"].(string)

	c := sim.DialTLS(t)
	if err := c.Auth(smtp.XOAuth2Auth(relay, tok)); err != nil {
		t.Fatalf("XOAUTH2 with a fresh token: %v", err)
	}
	if err := send(c, "helpdesk@contoso.com", []string{"ops@contoso.com"}, message("helpdesk@contoso.com")); err != nil {
		t.Fatal(err)
	}
	if m := sim.WaitForMessages(t, 1, waitLong)[0]; m.AuthUser != relay {
		t.Errorf("AuthUser = %q", m.AuthUser)
	}

	refused := map[string]func() (user, tok string){
		"unknown token":   func() (string, string) { return relay, "not-a-token" },
		"unknown mailbox": func() (string, string) { return "nobody@contoso.com", token(t, sim) },
		"expired by clock": func() (string, string) {
			tok := token(t, sim)
			clock.Advance(time.Hour)
			return relay, tok
		},
		"ExpireTokens": func() (string, string) {
			tok := token(t, sim)
			sim.ExpireTokens()
			return relay, tok
		},
	}
	for name, creds := range refused {
		t.Run(name, func(t *testing.T) {
			user, tok := creds()
			exosim.WantReply(t, sim.DialTLS(t).Auth(smtp.XOAuth2Auth(user, tok)), 535, "5.7.3")
		})
	}

	// A token issued after ExpireTokens works again.
	if err := sim.DialTLS(t).Auth(smtp.XOAuth2Auth(relay, token(t, sim))); err != nil {
		t.Fatalf("XOAUTH2 with a new token: %v", err)
	}
	if n := sim.TokensIssued(); n != 5 {
		t.Errorf("TokensIssued = %d, want 5", n)
	}
}

func TestBasicAuthDisabled(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.RegisterClientSecret(appID, appSecret)
	sim.SetBasicAuthDisabled(true)

	exosim.WantReply(t, sim.DialTLS(t).Auth(smtp.LoginAuth(alice, alicePW, sim.Host(), false)), 550, "5.7.30")
	exosim.WantReply(t, sim.DialTLS(t).Auth(smtp.PlainAuth("", alice, alicePW, sim.Host(), false)), 550, "5.7.30")
	if err := sim.DialTLS(t).Auth(smtp.XOAuth2Auth(alice, token(t, sim))); err != nil {
		t.Fatalf("XOAUTH2 must still work: %v", err)
	}

	sim.SetBasicAuthDisabled(false)
	login(t, sim, alice, alicePW)
}

func TestSMTPAuthDisabled(t *testing.T) {
	t.Parallel()
	sim := exosim.Start(t, submissionOptions())
	sim.RegisterClientSecret(appID, appSecret)
	tok := token(t, sim)

	sim.SetSMTPAuthDisabled(alice, true)
	for _, auth := range []smtp.Auth{
		smtp.PlainAuth("", alice, alicePW, sim.Host(), false),
		smtp.XOAuth2Auth(alice, tok),
	} {
		err := sim.DialTLS(t).Auth(auth)
		exosim.WantReply(t, err, 535, "5.7.139")
		if !strings.Contains(err.Error(), "disabled for the Mailbox") {
			t.Errorf("got %v", err)
		}
	}
	login(t, sim, relay, relayPW) // other mailboxes are unaffected

	sim.SetSMTPAuthDisabled("", true)
	err := sim.DialTLS(t).Auth(smtp.XOAuth2Auth(relay, tok))
	exosim.WantReply(t, err, 535, "5.7.139")
	if !strings.Contains(err.Error(), "disabled for the Tenant") {
		t.Errorf("got %v", err)
	}
	if st := sim.Stats(); st.Replies["5.7.139"] != 3 || st.Auths != 1 {
		t.Errorf("stats = %+v", st)
	}
}
