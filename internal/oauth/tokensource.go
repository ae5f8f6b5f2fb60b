package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/mailgate/mailgate/internal/config"
)

const (
	// DefaultRefreshBefore is how long before a token's expiry it is
	// replaced; it matches MSAL's own margin.
	DefaultRefreshBefore = 5 * time.Minute

	// fetchTimeout bounds one token request, discovery included.
	fetchTimeout = 30 * time.Second
	// retryInterval spaces out refresh attempts that fail while the current
	// token is still usable.
	retryInterval = 30 * time.Second
)

// Options tune a TokenSource. The zero value is ready for Entra ID.
type Options struct {
	// CAFile names a PEM file of roots trusted for the token endpoint's
	// HTTPS in addition to the system's. Give it the route's tls.ca_file: the
	// same private CA that signs a test or private SMTP server then also
	// signs its token endpoint (token_url).
	CAFile string
	// HTTPClient, when set, is used for every request to Entra as it is, and
	// CAFile is ignored.
	HTTPClient *http.Client
	// Now is the clock of token expiry; nil means time.Now.
	Now func() time.Time
	// RefreshBefore is how long before expiry a token is replaced; zero
	// means DefaultRefreshBefore.
	RefreshBefore time.Duration
	// Requested, when set, is told the result of every token request to
	// Entra ID (a nil error for a token), for metrics: a failing refresh is
	// invisible to delivery until the cached token runs out. It must not
	// block.
	Requested func(err error)
}

// WithDefaults returns o with its zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefreshBefore == 0 {
		o.RefreshBefore = DefaultRefreshBefore
	}
	return o
}

func (o Options) validate() error {
	if o.RefreshBefore < 0 {
		return fmt.Errorf("oauth options: RefreshBefore must not be negative, got %v", o.RefreshBefore)
	}
	return nil
}

// TokenSource gets and caches the app-only access tokens of one route. It is
// safe for concurrent use; all connections of the route share it.
type TokenSource struct {
	client        confidential.Client
	scopes        []string
	authority     string
	tenant        string
	clientID      string
	credKey       string // the configuration key of the credential, for hints
	secret        string // only to keep it out of error messages
	now           func() time.Time
	refreshBefore time.Duration
	requested     func(err error)

	mu       sync.Mutex
	cur      *token    // nil when there is none or it was invalidated
	inflight *fetch    // the request to Entra under way, if any
	retryAt  time.Time // no refresh of a usable token before this
}

// token is an access token with its times on the TokenSource's clock.
type token struct {
	value     string
	expires   time.Time
	refreshAt time.Time
}

// fetch is one request to Entra that any number of callers wait for.
type fetch struct {
	done    chan struct{}
	tok     *token
	err     error
	waiters int // callers waiting, for tests
}

// NewTokenSource returns the token source of a route's auth.oauth. Secrets
// must already be resolved (config.Load reads client_secret_file into
// ClientSecret). The authority is https://login.microsoftonline.com/<tenant_id>
// unless token_url is set; see ParseTokenURL. The scope defaults to
// config.Office365Scope. Nothing is requested before the first Token call.
func NewTokenSource(o *config.OAuth, opts Options) (*TokenSource, error) {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if o.ClientID == "" {
		return nil, errors.New("auth.oauth.client_id: required, the application (client) ID of the Entra ID app")
	}
	authority, tenant, err := authorityOf(o)
	if err != nil {
		return nil, err
	}
	cred, credKey, err := credential(o)
	if err != nil {
		return nil, err
	}
	hc := opts.HTTPClient
	if hc == nil {
		if hc, err = httpClient(opts.CAFile); err != nil {
			return nil, err
		}
	}
	scope := o.Scope
	if scope == "" {
		scope = config.Office365Scope
	}
	// Instance discovery asks login.microsoftonline.com whether the
	// authority's host is one of Microsoft's. It is either Microsoft's own
	// fixed host or the one the operator configured in token_url (a
	// sovereign cloud, a test endpoint), which discovery would refuse, and
	// its other use, cache aliases, is moot with MSAL's cache emptied.
	client, err := confidential.New(authority, o.ClientID, cred,
		confidential.WithInstanceDiscovery(false),
		confidential.WithHTTPClient(hc),
		confidential.WithCache(noCache{}),
		// MSAL would otherwise take a regional endpoint from the
		// environment (MSAL_FORCE_REGION); the authority is the
		// configuration's alone.
		confidential.WithAzureRegion("DisableMsalForceRegion"),
	)
	if err != nil {
		return nil, fmt.Errorf("auth.oauth: set up MSAL for authority %s: %w", authority, err)
	}
	return &TokenSource{
		client:        client,
		scopes:        strings.Fields(scope),
		authority:     authority,
		tenant:        tenant,
		clientID:      o.ClientID,
		credKey:       credKey,
		secret:        o.ClientSecret,
		now:           opts.Now,
		refreshBefore: opts.RefreshBefore,
		requested:     opts.Requested,
	}, nil
}

// Authority is the Entra ID authority tokens come from, such as
// https://login.microsoftonline.com/<tenant>, for logs.
func (s *TokenSource) Authority() string { return s.authority }

// Token returns an access token and when it expires. It comes from the cache
// while more than RefreshBefore of it remains; callers that find no usable
// token share one request to Entra. A refresh that fails while the cached
// token is still valid is not an error: the cached token is returned.
func (s *TokenSource) Token(ctx context.Context) (string, time.Time, error) {
	s.mu.Lock()
	now := s.now()
	t := s.usableLocked(now)
	if t != nil && (now.Before(t.refreshAt) || s.inflight != nil || now.Before(s.retryAt)) {
		s.mu.Unlock()
		return t.value, t.expires, nil
	}
	f := s.inflight
	if f == nil {
		f = s.startLocked(ctx)
	}
	f.waiters++
	s.mu.Unlock()

	var err error
	select {
	case <-f.done:
		if f.err == nil {
			return f.tok.value, f.tok.expires, nil
		}
		err = f.err
	case <-ctx.Done():
		err = fmt.Errorf("wait for a token for client_id %s in tenant %s: %w", s.clientID, s.tenant, ctx.Err())
	}
	s.mu.Lock()
	t = s.usableLocked(s.now())
	s.mu.Unlock()
	if t != nil {
		return t.value, t.expires, nil
	}
	return "", time.Time{}, err
}

// Invalidate drops the cached token, so the next Token call gets a new one
// from Entra. Call it when Exchange refused the token (535 5.7.3).
func (s *TokenSource) Invalidate() {
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
}

// invalidate drops the cached token only if it is value: a token that
// replaced a refused one meanwhile stays.
func (s *TokenSource) invalidate(value string) {
	s.mu.Lock()
	if s.cur != nil && s.cur.value == value {
		s.cur = nil
	}
	s.mu.Unlock()
}

func (s *TokenSource) usableLocked(now time.Time) *token {
	if s.cur == nil || !now.Before(s.cur.expires) {
		return nil
	}
	return s.cur
}

// startLocked starts a request to Entra. It runs on a context of its own,
// with ctx's values but not its cancellation, because other callers may
// join it: the caller that happened to start it going away must not fail
// them.
func (s *TokenSource) startLocked(ctx context.Context) *fetch {
	f := &fetch{done: make(chan struct{})}
	s.inflight = f
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	go func() {
		defer cancel()
		tok, err := s.acquire(fctx)
		if s.requested != nil {
			s.requested(err)
		}
		s.mu.Lock()
		if err == nil {
			s.cur, s.retryAt = tok, time.Time{}
		} else {
			s.retryAt = s.now().Add(retryInterval)
		}
		s.inflight = nil
		f.tok, f.err = tok, err
		s.mu.Unlock()
		close(f.done)
	}()
	return f
}

// acquire asks Entra for a token. MSAL's cache is always empty (noCache), so
// this is a request to the token endpoint every time.
func (s *TokenSource) acquire(ctx context.Context) (*token, error) {
	res, err := s.client.AcquireTokenByCredential(ctx, s.scopes)
	if err != nil {
		return nil, s.explain(err)
	}
	// MSAL computed ExpiresOn from expires_in with the wall clock; carry the
	// remaining lifetime over to s.now.
	lifetime := time.Until(res.ExpiresOn)
	if res.AccessToken == "" || lifetime <= 0 {
		return nil, fmt.Errorf("get a token for client_id %s in tenant %s: Entra ID answered without a usable access token (expires in %v)", s.clientID, s.tenant, lifetime.Round(time.Second))
	}
	now := s.now()
	early := min(s.refreshBefore, lifetime/2)
	return &token{value: res.AccessToken, expires: now.Add(lifetime), refreshAt: now.Add(lifetime - early)}, nil
}

// noCache is an MSAL cache accessor whose storage is always empty: Replace
// resets MSAL's in-memory token cache before each lookup and write, and
// Export keeps nothing. It makes every AcquireTokenByCredential a request to
// Entra, leaving caching to TokenSource. MSAL's tenant discovery results
// are kept elsewhere and survive.
type noCache struct{}

func (noCache) Replace(_ context.Context, c cache.Unmarshaler, _ cache.ReplaceHints) error {
	return c.Unmarshal([]byte("{}"))
}

func (noCache) Export(context.Context, cache.Marshaler, cache.ExportHints) error { return nil }
