package compose

import (
	"bytes"
	"mime/quotedprintable"
	"testing"
)

// qpTexts are texts for appendQP with what its rules are about: long
// lines, escapes near the end of a line, blanks before line breaks and at
// the end, every kind of line break, and an escaped byte between CR and LF.
var qpTexts = append([]string{
	"", " ", "\t", "=", "a \r\n", "a\t\n", "a \r", "\r\r\n\n", "x\r\x80\ny", "x\r=\ny",
	string(bytes.Repeat([]byte("a"), 73)) + "=é", string(bytes.Repeat([]byte("a"), 74)) + " \n",
	string(bytes.Repeat([]byte("a"), 75)) + " ", string(bytes.Repeat([]byte(" "), 200)),
	string(bytes.Repeat([]byte("\x00\xff"), 100)),
}, textBodies...)

func TestAppendQPMatchesWriter(t *testing.T) {
	for _, s := range qpTexts {
		compareQP(t, s)
	}
}

func FuzzAppendQPMatchesWriter(f *testing.F) {
	for _, s := range qpTexts {
		f.Add(s)
	}
	f.Fuzz(compareQP)
}

func compareQP(t *testing.T, s string) {
	var want bytes.Buffer
	w := quotedprintable.NewWriter(&want)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := appendQP(nil, s); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%q:\nappendQP %q\nWriter   %q", s, got, want.Bytes())
	}
}

// BenchmarkQP encodes the 2 KB text of BenchmarkBuildText with appendQP
// and, for comparison in the same run, with mime/quotedprintable's Writer.
func BenchmarkQP(b *testing.B) {
	s := textBodies[1]
	b.Run("appendQP", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			encodeQP(s)
		}
	})
	b.Run("Writer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			var out bytes.Buffer
			w := quotedprintable.NewWriter(&out)
			_, _ = w.Write([]byte(s))
			_ = w.Close()
		}
	})
}

// TestQPLiteral holds qpLiteral to mime/quotedprintable's Writer: a byte
// is literal when the Writer writes it as it is between two letters.
func TestQPLiteral(t *testing.T) {
	for c := 0; c < 256; c++ {
		in := []byte{'a', byte(c), 'a'}
		var out bytes.Buffer
		w := quotedprintable.NewWriter(&out)
		if _, err := w.Write(in); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if want := bytes.Equal(out.Bytes(), in); qpLiteral(byte(c)) != want {
			t.Errorf("qpLiteral(%#x) = %v, the Writer writes %q", c, !want, out.Bytes())
		}
	}
}
