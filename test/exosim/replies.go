package exosim

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// The replies Exchange Online gives, as go-smtp errors. The codes are the
// ones listed in docs/exchange-online.md; texts follow Exchange where known. Each
// is a function so that no reply value is shared and mutable.

func replyMustStartTLS() *smtp.SMTPError {
	return exoReply(530, "5.7.0", "Must issue a STARTTLS command first")
}

// replyConnectorNeedsTLS is Exchange's answer to MAIL without TLS on a
// receive connector that requires it; the odd 451 with a 5.x.x code is
// Exchange's own.
func replyConnectorNeedsTLS() *smtp.SMTPError {
	return exoReply(451, "5.7.3", "STARTTLS is required to send mail")
}

func replyNotAuthenticated() *smtp.SMTPError {
	return exoReply(530, "5.7.57", "Client not authenticated to send mail. Error: 530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM")
}

func replyAuthUnsuccessful() *smtp.SMTPError {
	return exoReply(535, "5.7.3", "Authentication unsuccessful")
}

func replyBasicAuthDisabled() *smtp.SMTPError {
	return exoReply(550, "5.7.30", "Basic authentication is not supported for Client Submission")
}

// replySMTPAuthDisabled is the answer when SmtpClientAuthenticationDisabled
// is set for the tenant (scope "Tenant") or the mailbox ("Mailbox").
func replySMTPAuthDisabled(scope string) *smtp.SMTPError {
	return exoReply(535, "5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled for the "+scope+". Visit https://aka.ms/smtp_auth_disabled for more information.")
}

func replyUnknownMechanism() *smtp.SMTPError {
	return exoReply(504, "5.7.4", "Unrecognized authentication type")
}

func replySendAsDenied() *smtp.SMTPError {
	return exoReply(550, "5.7.60", "SMTP; Client does not have permissions to send as this sender")
}

func replyRelayDenied() *smtp.SMTPError {
	return exoReply(550, "5.7.64", "TenantAttribution; Relay Access Denied")
}

func replyTooManyConnections() *smtp.SMTPError {
	return exoReply(432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded")
}

func replyQuotaExceeded() *smtp.SMTPError {
	return exoReply(554, "5.2.0", "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.[EndDiagnosticData]")
}

func replyTooLarge() *smtp.SMTPError {
	return exoReply(552, "5.3.4", "Message size exceeds fixed maximum message size")
}

func replyTooManyRecipients() *smtp.SMTPError {
	return exoReply(452, "4.5.3", "Too many recipients")
}

func replyQueued(id string) *smtp.SMTPError {
	return exoReply(250, "2.0.0", fmt.Sprintf("OK <%s> [Hostname=exosim.prod.outlook.com] Queued mail for delivery", id))
}

// exoReply builds a reply from its code, enhanced code ("5.7.60") and text.
func exoReply(code int, enhanced, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: parseEnhanced(enhanced), Message: text}
}

// parseEnhanced turns "4.7.500" into an EnhancedCode. Anything else gives
// EnhancedCodeNotSet, for which go-smtp sends X.0.0.
func parseEnhanced(s string) smtp.EnhancedCode {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCodeNotSet
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return smtp.EnhancedCodeNotSet
		}
		ec[i] = n
	}
	return ec
}

// enhancedString is the inverse of parseEnhanced; the key of Stats.Replies.
func enhancedString(code int, ec smtp.EnhancedCode) string {
	if ec == smtp.EnhancedCodeNotSet {
		return fmt.Sprintf("%d.0.0", code/100)
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}
