package smtpreply_test

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/smtpreply"
)

// The replies of docs/exchange-online.md ("Replies and what a gateway does
// with them"), and what mailgate must do with each.
func TestClassifyExchangeReplies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code int
		msg  string
		want smtpreply.Action
		hint string // a substring the operator hint must contain
	}{
		{250, "2.0.0 OK <id@contoso.com> [Hostname=AM0PR]", smtpreply.Sent, ""},
		{235, "2.7.0 Authentication successful", smtpreply.Sent, ""},
		{432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", smtpreply.Retry, ""},
		{451, "4.7.500 Server busy. Please try again later", smtpreply.Retry, ""},
		{451, "4.7.650 The mail server has been temporarily rate limited", smtpreply.Retry, ""},
		{451, "4.7.850 throttled", smtpreply.Retry, ""},
		{421, "4.3.2 Service not available, closing transmission channel", smtpreply.Retry, ""},
		{452, "4.5.3 Too many recipients", smtpreply.Retry, ""},
		{450, "mailbox busy", smtpreply.Retry, ""},
		{354, "Start mail input", smtpreply.Retry, ""},
		{535, "5.7.3 Authentication unsuccessful", smtpreply.HoldRoute, "SMTP.SendAsApp"},
		{535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant", smtpreply.HoldRoute, "SmtpClientAuthenticationDisabled"},
		{530, "5.7.57 Client not authenticated to send mail", smtpreply.HoldRoute, "authenticate"},
		{550, "5.7.30 Basic authentication is not supported for Client Submission", smtpreply.HoldRoute, "xoauth2"},
		{550, "5.7.64 TenantAttribution; Relay Access Denied", smtpreply.HoldRoute, "connector"},
		{550, "5.7.60 SMTP; Client does not have permissions to send as this sender", smtpreply.Fail, "Add-RecipientPermission"},
		{554, "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", smtpreply.Fail, "Send As"},
		{554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message", smtpreply.WaitMailbox, "10,000"},
		{554, "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException", smtpreply.Fail, ""},
		{550, "5.2.251 blocked", smtpreply.HoldRoute, "blocked"},
		{550, "5.2.255 blocked", smtpreply.HoldRoute, "blocked"},
		{550, "5.7.501 Access denied, spam abuse detected", smtpreply.HoldRoute, "blocked"},
		{550, "5.7.503 Access denied, banned sender", smtpreply.HoldRoute, "blocked"},
		{550, "5.7.705 Access denied, tenant has exceeded threshold", smtpreply.HoldRoute, "blocked"},
		{550, "5.7.708 Access denied, traffic not accepted from this IP", smtpreply.HoldRoute, "blocked"},
		{550, "5.7.750 Service unavailable. Client blocked from sending from unregistered domains", smtpreply.HoldRoute, "blocked"},
		{550, "5.1.8 Access denied, bad outbound sender", smtpreply.HoldRoute, "blocked"},
		{550, "5.2.250 not in the blocked range", smtpreply.Fail, ""},
		{550, "5.7.504 not in the blocked range", smtpreply.Fail, ""},
		{550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", smtpreply.Fail, ""},
		{552, "5.3.4 Message size exceeds fixed maximum message size", smtpreply.Fail, ""},
		{554, "Transaction failed", smtpreply.Fail, ""},
		{535, "authentication failed", smtpreply.HoldRoute, "credentials"},
		{999, "nonsense", smtpreply.Retry, ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %s", tc.code, tc.msg), func(t *testing.T) {
			v := smtpreply.Classify(smtpreply.Parse(tc.code, tc.msg))
			if v.Action != tc.want {
				t.Fatalf("action = %v, want %v", v.Action, tc.want)
			}
			if tc.hint != "" && !strings.Contains(v.Hint, tc.hint) {
				t.Fatalf("hint %q lacks %q", v.Hint, tc.hint)
			}
		})
	}
}

func TestParseEnhancedCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code           int
		msg, enh, text string
	}{
		{550, "5.7.60 SMTP; Client does not have permissions", "5.7.60", "SMTP; Client does not have permissions"},
		{250, "2.0.0 OK", "2.0.0", "OK"},
		{250, "OK", "", "OK"},
		{451, "4.7.500 Server busy.\nPlease try again", "4.7.500", "Server busy. Please try again"},
		{550, "5.7.1234 too long", "", "5.7.1234 too long"},
		{550, "5.7 incomplete", "", "5.7 incomplete"},
	}
	for _, tc := range cases {
		r := smtpreply.Parse(tc.code, tc.msg)
		if r.Enhanced != tc.enh || r.Text != tc.text || r.Code != tc.code {
			t.Errorf("Parse(%d, %q) = %+v", tc.code, tc.msg, r)
		}
	}
	if got := smtpreply.Parse(550, "5.7.60 no").String(); got != "550 5.7.60 no" {
		t.Errorf("String() = %q", got)
	}
}

func TestFromError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("rcpt: %w", &textproto.Error{Code: 550, Msg: "5.1.10 Recipient not found"})
	r, ok := smtpreply.FromError(err)
	if !ok || r.Code != 550 || r.Enhanced != "5.1.10" {
		t.Fatalf("FromError = %+v, %v", r, ok)
	}
	if _, ok := smtpreply.FromError(errors.New("connection reset")); ok {
		t.Fatal("a network error was read as a reply")
	}
}
