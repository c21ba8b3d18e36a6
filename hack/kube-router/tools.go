//go:build tools

// Package tools pins kube-router's command so 'go mod tidy' keeps its modules, with the
// dependencies go.mod raises above what kube-router v2.1.0 asks for (docs/local-control-plane.md
// says which and why).
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
