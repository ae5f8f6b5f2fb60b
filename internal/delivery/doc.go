// Package delivery takes messages from the queue and sends their stored
// bytes to a route's SMTP server.
//
// Each worker owns at most one SMTP connection (go-mail's smtp package,
// which sends the bytes as they are: go-mail's Msg would re-encode them) and
// reuses it for consecutive messages of the same sending mailbox, with RSET
// between transactions, until it has been idle for delivery.idle_timeout.
// When the server offers PIPELINING (RFC 2920), a transaction's MAIL FROM,
// RCPT TO and DATA go out in one write and the body after their replies:
// two round trips a message, whatever the number of recipients (conn.go).
// TLS is verified against the system roots plus the route's ca_file unless
// the route says insecure_skip_verify; STARTTLS is required when the route's
// mode is starttls, so a server that stops offering it is never talked to in
// clear text.
//
// Every reply is classified by package smtpreply: sent, retried after an
// exponential backoff with jitter (delivery.backoff_initial doubling up to
// delivery.backoff_max), or failed for good. A message whose next attempt
// would fall after delivery.max_age fails with the last reply as its reason.
// Recipients are tracked one by one: those accepted or refused for good are
// not sent again when the others are retried.
//
// Credentials come through the Authenticator seam, so static LOGIN/PLAIN and
// rotating OAuth 2.0 tokens (XOAUTH2) are interchangeable: the worker asks for
// an smtp.Auth for the mailbox before each AUTH, and tells the authenticator
// when the server refused it.
package delivery
