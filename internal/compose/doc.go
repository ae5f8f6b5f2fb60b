// Package compose turns a submission into the exact RFC 5322 / MIME bytes
// that mailgate stores in its queue and later hands to SMTP DATA unchanged.
//
// The message is rendered and checked exactly once, at the API's door
// (one path for a message): the worker never parses what
// it sends. Everything that could make Exchange Online refuse or misread a
// message, or let a client smuggle a header, is therefore refused here with
// an *Error that names the offending field.
//
// Two entry points:
//
//   - Build renders a structured submission with go-mail
//     (github.com/wneessen/go-mail). go-mail is only used as a renderer: the
//     Msg is written into a buffer with WriteTo and never sent by go-mail. It
//     chooses the MIME tree from what it is given: text/plain alone,
//     multipart/alternative for text and HTML, multipart/related around the
//     body when there are inline (Content-ID) parts and multipart/mixed around
//     everything when there are attachments. With text, HTML and inline
//     images that is related[alternative[text, html], image] rather than
//     alternative[text, related[html, image]]: go-mail has no way to build
//     the latter. Both are common in practice; go-mail also omits the type
//     parameter RFC 2387 asks for on multipart/related, which clients ignore.
//     Headers are encoded with RFC 2047 and folded at spaces; bodies are
//     quoted-printable, attachments base64 (RFC 2045), so the result is 7-bit
//     clean. Because go-mail folds at every space, runs of blanks in header
//     values are squeezed to one space: a folded line made only of blanks
//     could be taken for the end of the header.
//
//     Attachment content does not go through go-mail. go-mail (v0.8.1,
//     msgWriter.writeBody) base64-encodes every part into a bytes.Buffer it
//     grows as it writes and only then copies it out: about 48 MB of
//     allocations for a 10 MB attachment, on top of the message itself.
//     go-mail offers no way to size that buffer or to write a part already
//     encoded (a part it is not to encode gets Content-Transfer-Encoding
//     8bit). So go-mail is handed a random 24-byte token for each
//     attachment and renders everything else (headers, MIME tree, part
//     headers, boundaries) as usual; Build then finds each token's base64
//     line and writes the content there, base64 in lines of 76 as go-mail
//     would (attachbody.go, checked byte for byte against go-mail's own
//     output in the tests), into one buffer allocated at the final size. A
//     10 MB attachment costs the 13.7 MB message and little else; and
//     nothing at all when the caller hands it over (Attachment.Owned) in an
//     array with room for the message (EncodedLen): the message is then
//     rendered in that array, the content encoded forwards over itself. The
//     API reads large bodies and file parts with that room. The text and
//     HTML parts are handled the same way: go-mail would quoted-printable
//     encode each into a buffer grown from nothing, from a copy of the
//     string; Build encodes them beforehand with the encoder go-mail uses
//     (mime/quotedprintable) and splices them in, byte for byte what go-mail
//     writes (TestSpliceTextMatchesGoMail), which halves what rendering a
//     typical 2 KB message allocates. Writing
//     the multipart/mixed level ourselves would save the token search but
//     take the MIME tree away from go-mail, which is what it is here for.
//
//   - ParseRaw accepts a complete message (the /v1/messages/raw endpoint). It
//     is parsed and checked with go-message (github.com/emersion/go-message):
//     the whole entity tree is read to EOF so that broken multipart framing and
//     bad base64 or quoted-printable are caught now rather than by a recipient
//     (Go's quoted-printable decoder takes a stray "=" literally, as RFC 2045
//     section 6.7 suggests, but refuses raw control characters).
//     Only the top-level header is re-serialised (Bcc removed, From, Date,
//     Message-ID and MIME-Version added when missing); the body bytes are kept
//     exactly as sent apart from line endings, which become CRLF (RFC 5322
//     section 2.3; SMTP has no other line ending).
//
// Limits come from RFC 5322 section 2.1.1: a line is at most 998 bytes
// without its CRLF. Size limits are the caller's business: it compares
// len(Message.Bytes) against the app's max_message_bytes.
//
// Addresses are parsed by mailgate's one address parser, package addrpolicy
// (ParseAddress wraps it in an *Error). It accepts exactly one mailbox with
// an ASCII addr-spec on a dotted domain, and refuses display names that look
// like an address, because `"ceo@contoso.com" <evil@x.example>` shows as the
// CEO in most clients.
package compose
