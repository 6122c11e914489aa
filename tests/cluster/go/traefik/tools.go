//go:build tools

// Package tools keeps the Traefik command in this module's build list (for `go mod tidy`).
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
