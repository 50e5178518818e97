package web

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/go-rod/rod/lib/proto"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// Accessibility checks and screenshots for portal pages walked in
// Chromium. axe-core comes from npm (web/testdata/axe, installed by
// `make tools`); the screenshots are test artefacts under
// test-artefacts/ at the repository root (KEYGATE_ARTEFACTS overrides),
// which CI keeps.

// axeSource is axe.min.js, read once per test binary.
var axeSource = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
	return string(b), err
})

// axeViolation is the part of an axe-core result a failure message needs.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeCheck runs axe-core on the page as it is now and fails the test on
// any serious or critical violation (the bar); moderate and minor
// ones are logged. axe is injected through DevTools' Runtime.evaluate, which
// the portal's Content-Security-Policy does not apply to, so the page under
// test keeps its real policy.
func axeCheck(t *testing.T, p *browsertest.Page) {
	t.Helper()
	found, ok := axeRun(t, p)
	if !ok {
		return
	}
	var bad []string
	for _, v := range found {
		line := fmt.Sprintf("%s (%s): %s at %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, line)
			continue
		}
		t.Logf("axe (not failing, %s): %s", v.Impact, line)
	}
	if len(bad) > 0 {
		var u string
		_ = json.Unmarshal(p.Eval(t, `() => location.pathname`), &u)
		t.Errorf("axe: %d serious or critical violation(s) on %s:\n  %s", len(bad), u, strings.Join(bad, "\n  "))
	}
}

// axeRun injects axe-core and returns every violation on the page; ok is
// false when axe-core is not installed on a developer's machine (the
// check is skipped, loudly; CI fails instead).
func axeRun(t *testing.T, p *browsertest.Page) (found []axeViolation, ok bool) {
	t.Helper()
	src, err := axeSource()
	if err != nil {
		msg := fmt.Sprintf("axe-core is not installed (run `make tools`): %v", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Logf("SKIPPED accessibility check: %s — CI fails instead", msg)
		return nil, false
	}
	res, err := proto.RuntimeEvaluate{Expression: src + "\n;typeof axe"}.Call(p.Rod())
	if err != nil || res.ExceptionDetails != nil {
		t.Fatalf("axe: injecting axe-core: %v %+v", err, res)
	}
	p.EvalInto(t, &found, `async () => {
		const r = await axe.run(document, {resultTypes: ["violations"]});
		return r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
			nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
	}`)
	return found, true
}

// artefactName keeps file names portable.
var artefactName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// artefactDir is where this test's artefacts go: KEYGATE_ARTEFACTS, or
// test-artefacts/ next to go.mod.
func artefactDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("KEYGATE_ARTEFACTS")
	if root == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				t.Fatal("artefacts: no go.mod above the test's directory")
			}
			dir = parent
		}
		root = filepath.Join(dir, "test-artefacts")
	}
	dir := filepath.Join(root, artefactName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// keepScreenshot saves a full-page PNG of the page as name.png among the
// test's artefacts and returns its path.
func keepScreenshot(t *testing.T, p *browsertest.Page, name string) string {
	t.Helper()
	png, err := p.Rod().Screenshot(true, nil)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artefactDir(t), artefactName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
