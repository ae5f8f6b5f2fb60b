// Package openapi holds the OpenAPI 3.1 description of mailgate's HTTP API,
// openapi.yaml, which is the machine-readable form of the user-facing contract.
//
// The file is embedded so that the binary serves exactly the document it was
// built with (GET /openapi.yaml), and so that tests can check real responses
// against it (package openapi/contract).
package openapi

import _ "embed"

//go:embed openapi.yaml
var spec []byte

// Spec returns the OpenAPI document as YAML. The caller must not modify the
// returned slice; it is shared.
func Spec() []byte {
	return spec
}
