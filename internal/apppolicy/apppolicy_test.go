package apppolicy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, s Spec) *Policy {
	t.Helper()
	p, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec Spec
		want map[string]string // key -> substring
	}{
		{"nothing allowed", Spec{App: "a"}, map[string]string{"from": "give from.default, from.allowed or both"}},
		{"bad default", Spec{App: "a", DefaultFrom: "alerts"}, map[string]string{"from.default": "not a single address"}},
		{"default outside allowed", Spec{App: "a", DefaultFrom: "x@contoso.com", FromAllowed: []string{"y@contoso.com"}},
			map[string]string{"from.default": "is not matched by any pattern"}},
		{"every bad pattern", Spec{App: "a", FromAllowed: []string{"*@*", "ok@contoso.com", "a*@x.com"}, Recipients: []string{"nope"}},
			map[string]string{"from.allowed[0]": "every address", "from.allowed[2]": "partial", "recipients.allowed[0]": "no @"}},
	}
	for _, tt := range tests {
		p, err := Compile(tt.spec)
		if p != nil || err == nil {
			t.Errorf("%s: compiled", tt.name)
			continue
		}
		got := map[string]string{}
		for _, se := range SpecErrors(err) {
			got[se.Key] = se.Err.Error()
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: errors %v, want keys of %v", tt.name, got, tt.want)
		}
		for k, sub := range tt.want {
			if !strings.Contains(got[k], sub) {
				t.Errorf("%s: %s = %q, want it to contain %q", tt.name, k, got[k], sub)
			}
		}
	}
}

func TestChecks(t *testing.T) {
	t.Parallel()
	onlyDefault := mustCompile(t, Spec{App: "billing", DefaultFrom: "Help <helpdesk@contoso.com>", MaxRecipients: 2, MaxBytes: 100})
	wide := mustCompile(t, Spec{App: "mon", DefaultFrom: "alerts@alerts.contoso.com", FromAllowed: []string{"*@alerts.contoso.com"},
		Recipients: []string{"*@contoso.com"}, MaxRecipients: 2, MaxBytes: 100})

	if r := onlyDefault.CheckFrom("from", "helpdesk@contoso.com"); r != nil {
		t.Errorf("the default refused: %v", r)
	}
	// No allowed list: only the default, not its domain.
	r := onlyDefault.CheckFrom("headers.Sender", "other@contoso.com")
	want := &Refusal{Code: FromNotAllowed, App: "billing", Reason: "app billing may send as helpdesk@contoso.com",
		Fields: []FieldError{{Field: "headers.Sender", Message: "other@contoso.com is not within the app's From policy"}}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("CheckFrom = %#v, want %#v", r, want)
	}
	if r := wide.CheckFrom("envelope_from", "x@alerts.contoso.com"); r != nil {
		t.Errorf("a From within the pattern refused: %v", r)
	}
	if r := onlyDefault.CheckRecipients([]string{"anyone@gmail.com"}); r != nil {
		t.Errorf("no recipients list refused %v", r)
	}
	r = wide.CheckRecipients([]string{"a@contoso.com", "b@gmail.com", "c@evil.example"})
	if r == nil || r.Code != RecipientNotAllowed || len(r.Fields) != 2 || r.Fields[1].Message != "c@evil.example is not within the app's recipient policy" {
		t.Errorf("CheckRecipients = %#v", r)
	}
	if r := wide.CheckRecipientCount(2); r != nil {
		t.Errorf("CheckRecipientCount(2) = %v", r)
	}
	if r := wide.CheckRecipientCount(3); r == nil || r.Code != TooManyRecipients {
		t.Errorf("CheckRecipientCount(3) = %v", r)
	}
	if r := wide.CheckSize(100); r != nil {
		t.Errorf("CheckSize(100) = %v", r)
	}
	var err error = wide.CheckSize(101)
	var refused *Refusal
	if !errors.As(err, &refused) || refused.Code != MessageTooLarge {
		t.Errorf("CheckSize(101) = %v", err)
	}
	if got := onlyDefault.DefaultAddress(); got != "helpdesk@contoso.com" {
		t.Errorf("DefaultAddress = %q", got)
	}
}
