// Package contract checks real HTTP exchanges against openapi.yaml, so that a
// server test fails as soon as the server and the published API disagree.
//
// A test sends a request to the server as usual and hands the request, the
// response and both bodies to [Validator.Check]. Check fails the test when:
//
//   - the request matches no operation of the document;
//   - the response's status is not documented for the operation (the
//     document must list every status the server can answer with);
//   - a documented response header is missing or malformed, the
//     Content-Type is not one documented for that status, or the body does
//     not match its schema;
//   - the request breaks the document (a missing credential, a bad
//     parameter, a body that does not match its schema) and yet the server
//     answered with a success. Invalid requests answered with a 4xx are what
//     error-path tests send, so they pass, and their answer is checked like
//     any other.
//
// # OpenAPI 3.1
//
// The document is OpenAPI 3.1 and is used as such: kin-openapi v0.152 loads
// 3.1 documents (type arrays, const, if/then, jsonSchemaDialect, keywords
// next to $ref) and openapi3filter validates bodies of 3.1 documents with a
// JSON Schema 2020-12 validator (santhosh-tekuri/jsonschema), which it turns
// on by itself for them. No conversion to 3.0 is needed.
//
// Routing uses kin-openapi's legacy router rather than the gorilla/mux one,
// which would add a module to go.mod for no gain: the document has no
// servers, so requests are matched on their path alone.
package contract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/mailgate/mailgate/openapi"
)

// maxBodyInMessage bounds how much of a response body a failure message
// quotes: enough to recognise it, not enough to drown the test log.
const maxBodyInMessage = 2048

// Validator checks requests and responses against mailgate's OpenAPI
// document. It is safe for concurrent use by parallel tests.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// New loads and validates the embedded OpenAPI document. It fails the test if
// the document does not load or is not valid OpenAPI.
func New(tb testing.TB) *Validator {
	tb.Helper()
	v, err := load(tb.Context(), openapi.Spec())
	if err != nil {
		tb.Fatalf("contract: %v", err)
	}
	return v
}

func load(ctx context.Context, spec []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(ctx, openapi3.EnableMultiError()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not valid OpenAPI: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route openapi.yaml: %w", err)
	}
	return &Validator{doc: doc, router: router}, nil
}

// Check validates one exchange with the server and fails the test (without
// stopping it) on each way it breaks the document; see the package comment.
// reqBody and respBody are the bodies as sent and received, since req.Body
// and resp.Body have usually been read by then; req and resp are not
// modified.
func (v *Validator) Check(tb testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	tb.Helper()
	if err := v.check(tb.Context(), req, reqBody, resp, respBody); err != nil {
		tb.Errorf("contract: %s %s → %d: %v\nresponse Content-Type: %q\nresponse body: %s",
			req.Method, req.URL.Path, resp.StatusCode, err,
			resp.Header.Get("Content-Type"), quote(respBody))
	}
}

func (v *Validator) check(ctx context.Context, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	// Validation reads and may rewrite the body: work on a copy.
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	r.ContentLength = int64(len(reqBody))

	route, pathParams, err := v.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("no operation in openapi.yaml: %w", err)
	}

	reqInput := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: pathParams,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc:  requireCredentials,
			MultiError:          true,
			SkipSettingDefaults: true,
		},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, reqInput)

	respInput := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	respInput.SetBodyBytes(respBody)
	respErr := openapi3filter.ValidateResponse(ctx, respInput)

	if reqErr != nil && resp.StatusCode < 400 {
		respErr = errors.Join(fmt.Errorf("the server accepted a request that breaks openapi.yaml: %w", reqErr), respErr)
	}
	return respErr
}

// requireCredentials stands in for authentication: the server judges tokens,
// the document only says which kind of credential an operation needs. It
// fails when the Authorization header does not carry the scheme's kind, so
// an operation that answers without credentials is caught.
func requireCredentials(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme := in.SecurityScheme
	if scheme == nil || scheme.Type != "http" || scheme.Scheme == "" {
		return fmt.Errorf("security scheme %q: only http schemes are supported", in.SecuritySchemeName)
	}
	prefix := scheme.Scheme + " "
	auth := in.RequestValidationInput.Request.Header.Get("Authorization")
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return fmt.Errorf("no %s credentials in Authorization", scheme.Scheme)
	}
	return nil
}

func quote(body []byte) string {
	if len(body) == 0 {
		return "(empty)"
	}
	if len(body) > maxBodyInMessage {
		return fmt.Sprintf("%s… (%d bytes)", body[:maxBodyInMessage], len(body))
	}
	return string(body)
}
