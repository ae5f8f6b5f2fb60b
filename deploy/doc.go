// Package deploy holds what it takes to run mailgate: an example
// configuration and a guide (README.md); the Dockerfile is at the root of the
// module. Its only code is a test that keeps config.example.yaml loadable by
// the configuration loader, so the example cannot drift from the keys the
// binary accepts.
package deploy
