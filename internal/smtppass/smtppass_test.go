package smtppass_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/smtppass"
	"github.com/mailgate/mailgate/test/redistest"
)

func TestIssueVerifyRevoke(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	store := smtppass.New(srv.Client(), "mg", nil)
	v := smtppass.NewVerifier(store, time.Minute)

	pw, id, err := store.Issue(ctx, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	if len(pw) > 32 || !strings.HasPrefix(pw, "mgs_"+id+"_") || !smtppass.IsPassword(pw) {
		t.Fatalf("password %q (id %s): want mgs_<id>_<secret> of at most 32 characters", pw, id)
	}
	// Only the hash is stored: the secret appears nowhere in Redis.
	rec := srv.Client().HGetAll(ctx, "mg:smtp-password:"+id).Val()
	if rec["app"] != "scanner" || !strings.HasPrefix(rec["hash"], "$argon2id$") {
		t.Fatalf("record %v", rec)
	}
	for _, val := range rec {
		if strings.Contains(val, pw[len("mgs_")+7:]) {
			t.Fatalf("the secret is stored in clear: %v", rec)
		}
	}

	for i := range 2 { // the second time from the cache
		app, gotID, err := v.Verify(ctx, pw)
		if err != nil || app != "scanner" || gotID != id {
			t.Fatalf("verify %d: %q %q %v", i, app, gotID, err)
		}
	}
	other := "A"
	if pw[len(pw)-1] == 'A' {
		other = "B"
	}
	wrong := pw[:len(pw)-1] + other
	if _, _, err := v.Verify(ctx, wrong); !errors.Is(err, smtppass.ErrMismatch) {
		t.Fatalf("wrong secret: %v, want ErrMismatch", err)
	}
	if _, _, err := v.Verify(ctx, "mgs_aaaaaa_"+strings.Repeat("x", 20)); !errors.Is(err, smtppass.ErrUnknown) {
		t.Fatalf("unknown id: %v, want ErrUnknown", err)
	}
	if _, _, err := v.Verify(ctx, "hunter2"); !errors.Is(err, smtppass.ErrMalformed) {
		t.Fatalf("malformed: %v", err)
	}

	// Revoked by id, it is refused at once although the cache knows it.
	if got, err := store.Revoke(ctx, id); err != nil || got != id {
		t.Fatalf("revoke: %q %v", got, err)
	}
	if _, _, err := v.Verify(ctx, pw); !errors.Is(err, smtppass.ErrUnknown) {
		t.Fatalf("after revoke: %v, want ErrUnknown", err)
	}
	if _, err := store.Revoke(ctx, pw); !errors.Is(err, smtppass.ErrUnknown) {
		t.Fatalf("second revoke by password: %v, want ErrUnknown", err)
	}
	if _, err := store.Revoke(ctx, "nope"); !errors.Is(err, smtppass.ErrMalformed) {
		t.Fatalf("revoke nonsense: %v", err)
	}
}

func TestVerifyRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	store := smtppass.New(srv.Client(), "mg", nil)
	pw, _, err := store.Issue(context.Background(), "scanner")
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, _, err = smtppass.NewVerifier(store, 0).Verify(context.Background(), pw)
	if err == nil || errors.Is(err, smtppass.ErrUnknown) || errors.Is(err, smtppass.ErrMismatch) {
		t.Fatalf("with Redis down: %v, want an error that is no verdict", err)
	}
}
