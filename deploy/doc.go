// Package deploy holds what it takes to run mailgate: an example
// configuration and a guide (README.md), a Docker Compose file, a kustomize
// base for Kubernetes, a systemd unit, Prometheus alert rules and a Grafana
// dashboard; the Dockerfile is at the root of the module.
//
// Its only code is tests that keep those files true: the configurations load
// as `mailgate serve` loads them, the Kubernetes manifests decode strictly
// into the Kubernetes API types, compose.yaml passes the Compose
// Specification's schema, the SMTP door's published ports match the
// addresses it listens on, the unit passes systemd-analyze, the rules pass
// promtool's unit tests, and every metric the dashboard and the rules query
// is one a live gateway exports.
package deploy
