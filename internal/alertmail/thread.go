package alertmail

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Thread returns the headers that put every mail of one alert group in
// one conversation, in standard clients and in Outlook, without any state:
// all of them are derived from the app and the group key.
//
//   - References and In-Reply-To name one root id, <group-HASH@domain>,
//     that every mail of the group shares (RFC 5322 section 3.6.4). No
//     mail carries it as its own Message-ID, since the first mail of a
//     group cannot know it is the first; clients thread on the shared
//     parent all the same (Thunderbird, Apple Mail, Gmail together with the
//     subject's topic).
//   - Thread-Topic and Thread-Index are what Outlook and Exchange group a
//     conversation by ([MS-OXOMSG] 2.2.1.3 and 2.2.1.5 PidTagConversationIndex):
//     the index's 22-byte header block (a reserved byte, five bytes of time,
//     a 16-byte GUID) is the same for every mail of the group, here taken
//     from the hash instead of a clock and a random GUID.
//
// Each mail keeps its own unique Message-ID. domain is the right part of
// the root id, normally the From domain.
func Thread(app string, n *Notification, domain string) map[string]string {
	sum := sha256.Sum256([]byte(app + "\x00" + n.Source + "\x00" + n.GroupKey))
	root := "<group-" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
	index := make([]byte, 22)
	index[0] = 0x01 // the reserved byte Outlook writes
	copy(index[1:], sum[16:32])
	copy(index[17:], sum[:5])
	return map[string]string{
		"References":   root,
		"In-Reply-To":  root,
		"Thread-Topic": Topic(n),
		"Thread-Index": base64.StdEncoding.EncodeToString(index),
	}
}

// Topic is the part of the subject that does not change between firing
// and resolved: the group's label values.
func Topic(n *Notification) string {
	t := strings.Join(n.GroupLabels.Values(), " ")
	if t == "" {
		t = n.Receiver
	}
	if t == "" {
		t = "alerts"
	}
	return foldLine(t)
}

// foldLine keeps a header value on one line whatever the labels hold.
func foldLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200]
		for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
			s = s[:len(s)-1]
		}
		if len(s) > 0 && s[len(s)-1] >= 0xC0 {
			s = s[:len(s)-1]
		}
	}
	return s
}

// LabelRecipients returns the addresses the alerts name in label: a label
// value may list several, separated by commas, semicolons or spaces. The
// caller checks each against the app's recipient policy like any other.
func LabelRecipients(n *Notification, label string) []string {
	if label == "" {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		for _, a := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' }) {
			if !seen[strings.ToLower(a)] {
				seen[strings.ToLower(a)] = true
				out = append(out, a)
			}
		}
	}
	add(n.CommonLabels[label])
	for _, a := range n.Alerts {
		add(a.Labels[label])
	}
	return out
}
