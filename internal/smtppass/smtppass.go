// Package smtppass issues, verifies and revokes short SMTP passwords: the
// password a device uses for SMTP AUTH when its password field is too small
// for an app's token (many scanners cap it at 32 to 64 characters).
//
// A password looks like mgs_<id>_<secret>: 31 characters, the id (6
// characters) naming its record so it can be revoked without knowing the
// secret, the secret 20 characters of base64url (120 random bits). Redis
// keeps, under the configured key prefix, only the app and an argon2id hash
// (RFC 9106) of the whole password, so a copy of Redis does not reveal it.
//
// argon2id is slow on purpose (about 20 to 50 ms of CPU here), and a
// scanner that opens a connection per page would pay that every time. So a
// Verifier remembers, for a few minutes, the SHA-256 of each password it
// has verified together with the hash it matched. A fast hash is safe as a
// key because the secret has 120 random bits: nothing can be guessed from
// it. The record itself is still read from Redis on every verification, so
// a revoked password (its record deleted) is refused at the next AUTH or
// message on every instance, cache or not.
package smtppass

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/argon2"

	"github.com/mailgate/mailgate/internal/keys"
)

// Prefix starts every short SMTP password.
const Prefix = "mgs_"

const (
	idLen     = 6  // base32 characters: 30 bits, unique per install (checked at issue)
	secretLen = 20 // base64url characters: 120 bits
	// Argon2id parameters: the second recommended option of RFC 9106
	// section 4 with less memory, as OWASP's cheat sheet suggests for
	// servers (m=19 MiB, t=2, p=1).
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	saltLen      = 16
)

// Errors of Verify and Revoke. Any other error means Redis could not be
// asked; the caller then answers with a temporary failure.
var (
	ErrMalformed = errors.New("not a short SMTP password (mgs_…)")
	ErrUnknown   = errors.New("unknown or revoked SMTP password")
	ErrMismatch  = errors.New("wrong SMTP password")
)

// Store keeps the password records in Redis.
type Store struct {
	rdb  redis.UniversalClient
	keys keys.Space
	now  func() time.Time
}

// New returns the store under key prefix prefix.
func New(rdb redis.UniversalClient, prefix string, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{rdb: rdb, keys: keys.New(prefix), now: now}
}

func (s *Store) key(id string) string { return s.keys.SMTPPassword(id) }

// Issue creates a password for app and returns it; only its hash is stored.
func (s *Store) Issue(ctx context.Context, app string) (password, id string, err error) {
	for range 5 {
		id = randomID()
		password = Prefix + id + "_" + randomSecret()
		salt := make([]byte, saltLen)
		rand.Read(salt)
		ok, err := s.rdb.HSetNX(ctx, s.key(id), "app", app).Result()
		if err != nil {
			return "", "", fmt.Errorf("store SMTP password: %w", err)
		}
		if !ok {
			continue // that id exists: draw another
		}
		err = s.rdb.HSet(ctx, s.key(id), "hash", encodeHash(salt, hash(password, salt)),
			"created", s.now().UTC().Format(time.RFC3339)).Err()
		if err != nil {
			s.rdb.Del(context.WithoutCancel(ctx), s.key(id))
			return "", "", fmt.Errorf("store SMTP password: %w", err)
		}
		return password, id, nil
	}
	return "", "", errors.New("store SMTP password: could not find a free id")
}

// Revoke deletes the record of a password, given the password or its id.
func (s *Store) Revoke(ctx context.Context, passwordOrID string) (id string, err error) {
	id = passwordOrID
	if strings.HasPrefix(passwordOrID, Prefix) {
		if id, err = ParseID(passwordOrID); err != nil {
			return "", err
		}
	} else if len(id) != idLen || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return "", fmt.Errorf("%w: give the password or its id (%d characters, as in mgs_<id>_…)", ErrMalformed, idLen)
	}
	n, err := s.rdb.Del(ctx, s.key(id)).Result()
	if err != nil {
		return "", fmt.Errorf("revoke SMTP password %s: %w", id, err)
	}
	if n == 0 {
		return id, fmt.Errorf("SMTP password %s: %w", id, ErrUnknown)
	}
	return id, nil
}

// ParseID returns the id of a password, or ErrMalformed.
func ParseID(password string) (string, error) {
	rest, ok := strings.CutPrefix(password, Prefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", ErrMalformed
	}
	return rest[:idLen], nil
}

// IsPassword reports whether s has the form of a short SMTP password, as
// opposed to a token.
func IsPassword(s string) bool {
	_, err := ParseID(s)
	return err == nil
}

// Verifier checks passwords against the store, remembering recent
// successes (see the package comment).
type Verifier struct {
	store *Store
	ttl   time.Duration
	max   int

	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	hash string // the stored hash the password matched
	at   time.Time
}

// NewVerifier returns a Verifier; ttl bounds how long a success spares the
// argon2id computation (0 means 10 minutes).
func NewVerifier(store *Store, ttl time.Duration) *Verifier {
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return &Verifier{store: store, ttl: ttl, max: 10000, cache: map[[32]byte]cached{}}
}

// Verify returns the app and id of password. The record is read from Redis
// every time, so a revocation takes effect at once; only the slow hash is
// skipped for a password verified in the last ttl.
func (v *Verifier) Verify(ctx context.Context, password string) (app, id string, err error) {
	id, err = ParseID(password)
	if err != nil {
		return "", "", err
	}
	rec, err := v.store.rdb.HMGet(ctx, v.store.key(id), "app", "hash").Result()
	if err != nil {
		return "", "", fmt.Errorf("read SMTP password %s: %w", id, err)
	}
	app, _ = rec[0].(string)
	stored, _ := rec[1].(string)
	if app == "" || stored == "" {
		return "", id, ErrUnknown
	}
	fast := sha256.Sum256([]byte(password))
	now := v.store.now()
	v.mu.Lock()
	c, hit := v.cache[fast]
	v.mu.Unlock()
	if hit && c.hash == stored && now.Sub(c.at) < v.ttl {
		return app, id, nil
	}
	ph, err := decodeHash(stored)
	if err != nil {
		return "", id, fmt.Errorf("SMTP password %s: %w", id, err)
	}
	got := argon2.IDKey([]byte(password), ph.salt, ph.t, ph.m, ph.p, uint32(len(ph.sum)))
	if subtle.ConstantTimeCompare(got, ph.sum) != 1 {
		return "", id, ErrMismatch
	}
	v.mu.Lock()
	if len(v.cache) >= v.max {
		for k, e := range v.cache {
			if now.Sub(e.at) >= v.ttl || len(v.cache) >= v.max {
				delete(v.cache, k)
			}
		}
	}
	v.cache[fast] = cached{hash: stored, at: now}
	v.mu.Unlock()
	return app, id, nil
}

func hash(password string, salt []byte) []byte {
	return argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
}

// encodeHash writes the PHC string format, which names its parameters, so
// they can change later without breaking stored passwords.
func encodeHash(salt, sum []byte) string {
	b := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b.EncodeToString(salt), b.EncodeToString(sum))
}

type phc struct {
	m, t      uint32
	p         uint8
	salt, sum []byte
}

func decodeHash(s string) (phc, error) {
	var h phc
	var version int
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return h, errors.New("stored hash is not argon2id")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return h, errors.New("stored hash has an unknown argon2 version")
	}
	// Bounds keep a tampered record from costing gigabytes of memory.
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.m, &h.t, &h.p); err != nil ||
		h.m < 1024 || h.m > 1<<20 || h.t < 1 || h.t > 10 || h.p < 1 || h.p > 8 {
		return h, errors.New("stored hash has unusable argon2 parameters")
	}
	var err1, err2 error
	h.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	h.sum, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(h.sum) < 16 {
		return h, errors.New("stored hash is corrupt")
	}
	return h, nil
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return idEncoding.EncodeToString(b)[:idLen]
}

func randomSecret() string {
	b := make([]byte, secretLen*3/4)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
