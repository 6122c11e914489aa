// Command promql-check parses PromQL expressions with Prometheus' own parser and reports the
// metric names each one selects.
//
// Input (stdin): a JSON array of expressions. Output (stdout): a JSON array with one object per
// expression, in order: {"expr": ..., "error": "..." (absent when it parses), "metrics": [...]}.
// It exits 0 when the input was read, whatever the expressions; 2 on unreadable input. The
// caller decides what a parse error or an unknown metric means.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr    string   `json:"expr"`
	Error   string   `json:"error,omitempty"`
	Metrics []string `json:"metrics"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "promql-check: reading stdin:", err)
		os.Exit(2)
	}
	var exprs []string
	if err := json.Unmarshal(input, &exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check: stdin is not a JSON array of strings:", err)
		os.Exit(2)
	}
	// Default options: the stable PromQL a stock Prometheus server accepts (no experimental
	// functions), so an expression that parses here also loads in a real Prometheus.
	p := parser.NewParser(parser.Options{})
	results := make([]result, 0, len(exprs))
	for _, e := range exprs {
		results = append(results, check(p, e))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	out.SetEscapeHTML(false)
	if err := out.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check: writing stdout:", err)
		os.Exit(2)
	}
}

func check(p parser.Parser, input string) result {
	r := result{Expr: input, Metrics: []string{}}
	expr, err := p.ParseExpr(input)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	names := map[string]struct{}{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			if name := selectedName(vs); name != "" {
				names[name] = struct{}{}
			} else {
				// A selector without a fixed name (only label matchers) cannot be checked
				// against a list of metric names: report it so the caller can refuse it.
				names["<no metric name: "+vs.String()+">"] = struct{}{}
			}
		}
		return nil
	})
	for n := range names {
		r.Metrics = append(r.Metrics, n)
	}
	sort.Strings(r.Metrics)
	return r
}

// selectedName is the metric name a selector fixes, by its name or an equality matcher on
// __name__.
func selectedName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}
