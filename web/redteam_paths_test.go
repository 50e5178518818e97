package web

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

// A second, outsider's battery of path spellings (issue 11 red team): forms
// that realappCorpus does not generate — classes mixed in one path, "%3b"
// for ";", a fragment or query written raw on the request line, tabs, IIS's
// %uXXXX, Unicode letters that some stack folds or normalises into the
// ASCII of an area's name, trailing "/." and "/..", very long paths — sent
// byte for byte by the three clients of the real-app battery to the same
// real apps, in proxy mode and behind real nginx with the shipped snippet.
// Pass: as TestRealAppsPathBattery, no answer from an area the client may
// not enter, and the reserved prefix never forwarded.

// redteamCorpus generates the spellings.
func redteamCorpus() []spelling {
	var out []spelling
	seen := map[string]bool{}
	add := func(class, target, path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		out = append(out, spelling{class: class, target: target, path: path})
	}
	each := func(class, target string, patterns ...string) {
		for _, p := range patterns {
			add(class, target, strings.ReplaceAll(p, "{T}", target))
		}
	}
	// The baseline, so that a blind battery fails (run.check).
	for _, a := range realAreas {
		each("plain", a, "/{T}/", "/{T}/file.txt")
	}
	for _, t := range []string{"one", "two", "deny"} {
		up := strings.ToUpper(t)
		title := strings.ToUpper(t[:1]) + t[1:]
		each("mixed classes", t,
			"/"+up+";x%2ffile.txt", "/"+title+";x/file.txt", "/"+up+"%2ffile.txt", "/public/..;/"+up+"%2f",
			"/pUbLiC%2f..%2f"+up+"/", "/"+up+`\file.txt`, "/"+up+"./file.txt", "/"+up+"%20/x/", "//"+up+"//x/",
			"/"+up+"%2F/", "/"+title+"%2f%2e%2e%2fpublic/", "/PUBLIC/..;/"+up+"/", "/public/..%2F"+up+"%2Ffile.txt")
		each("%3b", t,
			"/public/%2e%2e%3b/{T}/", "/public/..%3b/{T}/", "/public/..%3B/{T}/", "/{T}%3bx/", "/{T}%3Bx/file.txt",
			"/{T}%3b/file.txt", "/public%3b/../{T}/", "/public%3bx%2f..%2f{T}/", "/{T}/x%3b/", "/{T}%3B%2F..%2F..%2Fpublic/")
		each("tab", t, "/{T}%09/", "/%09{T}/", "/{T}/%09", "/public/..%09/{T}/", "/public/%09../{T}/", "/{T}%09%09/file.txt")
		each("%u", t,
			"/public/%u002e%u002e/{T}/", "/public/..%u002f{T}/", "/public/..%u2215{T}/",
			fmt.Sprintf("/%%u%04x%s/", t[0], t[1:]), fmt.Sprintf("/%%U%04X%s/file.txt", t[0], t[1:]), "/{T}%u0000/")
		each("NUL", t, "/public/..%00/{T}/", "/{T}%00/", "/{T}%00.txt", "/{T}/file.txt%00.jpg", "/public/%00../{T}/")
		each("end dots", t, "/public/..", "/public/.", "/{T}/.", "/{T}/..", "/{T}/x/..", "/{T}/%2e", "/{T}/%2E%2E",
			"/public/x/../..", "/{T}.", "/{T}..", "/{T}...", "/{T}/.;", "/{T}/..;")
		// A fragment or query written raw on the request line: nginx and
		// Node's URL parser end the path at "#", Go keeps it in the path.
		each("fragment/query", t,
			"/{T}#/x", "/{T}#", "/{T}/#/../public/", "/public#/../{T}/", "/public/#/../{T}/", "/{T}%23/", "/{T}%23/file.txt",
			"/public?x=/../{T}/", "/public?/../{T}/", "/public/?../{T}/", "/{T}?", "/{T}?x#y", "/public%3f/../{T}/",
			"/public#%2f..%2f{T}/", "/{T}%3F/", "/"+up+"#/x", "/public%23/%2e%2e/{T}/")
		each("long", t,
			"/public/"+strings.Repeat("a/", 4100)+strings.Repeat("../", 4100)+"{T}/",
			"/public/"+strings.Repeat("x", 9000)+"/..%2f{T}/",
			"/"+up+"/"+strings.Repeat("a", 9000),
			"/{T}/"+strings.Repeat("%20", 3000),
			"/{T}"+strings.Repeat("/", 3000)+"file.txt")
	}
	// Unicode: letters whose case mapping (Java equalsIgnoreCase, .NET
	// OrdinalIgnoreCase, JavaScript toUpperCase/toLowerCase) or whose
	// compatibility form (NFKC, which some stacks apply) is an area's ASCII.
	uni := func(target string, forms ...string) {
		for _, f := range forms {
			add("unicode", target, "/"+f+"/")
			add("unicode", target, "/"+url.PathEscape(f)+"/file.txt")
		}
	}
	uni("public", "publıc", "publİc", "PUBLİC", "ｐｕｂｌｉｃ")
	uni("two", "𝐭𝐰𝐨", "ᵗʷᵒ", "ⓣⓦⓞ", "𝓉𝓌ℴ", "ＴＷＯ", "tᴡo", "tẁo", "two\u0301", "t\u200bwo", "tw\u00ado", "two\ufeff")
	uni("one", "𝐨𝐧𝐞", "ᵒⁿᵉ", "ⓞⓝⓔ", "ℴ𝓃ℯ", "ＯＮＥ", "onｅ")
	uni("deny", "𝐝𝐞𝐧𝐲", "ⓓⓔⓝⓨ", "ᵈᵉⁿʸ", "ＤＥＮＹ", "dēny", "den\u0443", "de\u0578y", "ⅾeny", "deny\u200d")
	// The reserved prefix in the same forms.
	for _, p := range []string{"/.keygate#/x", "/.KEYGATE%3b/x", "/.keygate%3bx/api/session", "/.keygate%09/x", "/.keygate%u002fx",
		"/%u002ekeygate/x", "/.ｋｅｙｇａｔｅ/x", "/.𝐤𝐞𝐲𝐠𝐚𝐭𝐞/x", "/.\u212aeygate/x", "/.keyga\u1d57e/x", "/.keygate?/x",
		"/.keygate/", "/.keygate/.", "/.keygate/..", "/public/..%3b/.keygate/x", "/.KeyGate%2F%2e%2e%2fx", "/.keygate\u200b/x"} {
		sp := spelling{class: "reserved prefix", target: "reserved", path: p}
		if !seen[p] {
			seen[p] = true
			out = append(out, sp)
		}
	}
	// Raw non-ASCII bytes cannot go on a request line as they are for every
	// server; keep the percent-encoded and the raw UTF-8 forms both, but
	// never a raw space or control byte.
	for i := range out {
		out[i].path = strings.Map(func(r rune) rune {
			if r <= ' ' || r == 0x7f {
				return -1
			}
			return r
		}, out[i].path)
	}
	return out
}

// redteamParamsOptions is how an admin declares Tomcat: it takes ";"
// parameters (;jsessionid) and routes case-sensitively.
var redteamParamsOptions = policy.PathOptions{PathParameters: true, CaseSensitive: true}

// redteamParamsCorpus is the ";" class again, for a Tomcat declared with
// path_parameters: every spelling then gets past the 400 and is judged
// with its parameters stripped.
func redteamParamsCorpus() []spelling {
	var out []spelling
	seen := map[string]bool{}
	for _, a := range realAreas {
		for _, p := range []string{"/{T}/", "/{T}/file.txt"} {
			p = strings.ReplaceAll(p, "{T}", a)
			seen[p] = true
			out = append(out, spelling{class: "plain", target: a, path: p})
		}
	}
	for _, t := range []string{"one", "two", "deny"} {
		for _, p := range []string{
			"/public;/{T}/", "/public;x/../{T}/", "/public;x=/../{T}/", "/public;%2f..%2f{T}/", "/public;x%2F..%2F{T}/",
			"/public;/%2e%2e/{T}/", "/public%3b/{T}/", "/public%3B/../{T}/", "/{T};x/", "/{T};/file.txt", "/{T};jsessionid=1/x/",
			"/public/..;/{T}/", "/public/..;x/{T}/", "/public/.;/{T}/", "/public/;/../{T}/", "/public/;../{T}/",
			"/public;/..;/{T}/", "/public;x;y/{T}/", "/public;;/../{T}/", "/;/{T}/", "/;x/{T}/", "/public;\\..\\{T}/",
			"/public;x/%2e%2e%3b/{T}/", "/;/public/../{T}/", "/public/x;/..;/..;/{T}/", "/public;a=b/c;d/..;/..;/{T}/",
			"/{T};%2e%2e/", "/public/.%3b/../{T}/", "/public/%3b/../{T}/", "/public;/%2e./{T}/",
			"/public;.keygate/x", "/.keygate;x/x", "/;/.keygate/x", "/public/..;/.keygate/x",
			"/" + strings.ToUpper(t) + ";x/", "/public;x/" + strings.ToUpper(t) + "/",
		} {
			p = strings.ReplaceAll(p, "{T}", t)
			if seen[p] {
				continue
			}
			seen[p] = true
			sp := spelling{class: "params (path_parameters)", target: t, path: p}
			if strings.Contains(p, ".keygate") {
				sp.class, sp.target = "reserved prefix", "reserved"
			}
			out = append(out, sp)
		}
	}
	return out
}

// TestRedteamPathSpellings runs the red team's spellings against Tomcat,
// Express, Go's ServeMux and static nginx behind keygate, Tomcat once more
// declared with path_parameters and case_sensitive, and Express and Tomcat
// behind real nginx with the shipped forward-auth snippet.
func TestRedteamPathSpellings(t *testing.T) {
	start := time.Now()
	corpus := redteamCorpus()
	params := redteamParamsCorpus()
	apps := startRealApps(t)
	t.Logf("apps started in %v; corpus %d spellings (%s), params corpus %d", time.Since(start).Round(time.Millisecond),
		len(corpus), classCounts(corpus), len(params))
	sem := make(chan struct{}, 12)

	t.Run("proxy", func(t *testing.T) {
		for _, name := range []string{"tomcat", "express", "gomux", "nginx"} {
			app := apps[name]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				app.need(t)
				h := newHarness(t, harnessOptions{policyYAML: realappsPolicy, upstreamURL: "http://" + app.addr})
				run := battery(t, "redteam/proxy/"+name, h.srv.Listener.Addr().String(), corpus, realClients(t, h), sem)
				run.check(t, len(corpus))
			})
		}
		t.Run("tomcat-path-parameters", func(t *testing.T) {
			t.Parallel()
			app := apps["tomcat"]
			app.need(t)
			h := newHarness(t, harnessOptions{policyYAML: realappsPolicy, upstreamURL: "http://" + app.addr})
			target, _ := url.Parse("http://" + app.addr)
			if err := h.web.SetUpstreams([]Upstream{{Host: "app.example.com", URL: target, Paths: redteamParamsOptions}}); err != nil {
				t.Fatal(err)
			}
			run := battery(t, "redteam/proxy/tomcat+params", h.srv.Listener.Addr().String(), params, realClients(t, h), sem)
			run.check(t, len(params))
		})
	})

	t.Run("forward-auth", func(t *testing.T) {
		for _, name := range []string{"express", "tomcat"} {
			app := apps[name]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				app.need(t)
				h := newHarness(t, harnessOptions{policyYAML: realappsPolicy, trustedProxies: []string{"127.0.0.1"}})
				addr := startSnippetNginx(t, h.srv.Listener.Addr().String(), app.addr)
				run := battery(t, "redteam/forward-auth/"+name, addr, corpus, realClients(t, h), sem)
				run.check(t, len(corpus))
				if n := h.up.count(); n > 0 {
					t.Errorf("forward-auth/%s: LEAK: keygate proxied %d requests nginx sent to its /.keygate/ location on to an upstream: %s",
						name, n, h.up.last(t).RequestURI)
				}
			})
		}
	})
	t.Logf("red-team path battery wall time %v", time.Since(start).Round(time.Millisecond))
}

// redteamLooseDefaultPolicy is a common shape of policy: signed-in people
// may use the app, one area needs a second factor.
const redteamLooseDefaultPolicy = `
default: one_factor
rules:
  - name: public
    hosts: [app.example.com]
    paths: ["/public/**"]
    action: bypass
  - name: two
    hosts: [app.example.com]
    paths: ["/two/**"]
    action: two_factor
  - name: deny
    hosts: [app.example.com]
    paths: ["/deny/**"]
    action: deny
`

// TestRedteamFragmentBehindNginx: a "#" written raw on the request line.
// nginx takes it, judges nothing itself, asks keygate about
// $scheme://$host$request_uri and proxies the line as the client wrote it;
// keygate judges "/two#x" as a path whose first segment is "two#x" (no rule:
// the default), while Express (Node's URL parser) ends the path at "#" and
// serves /two. A password-only session then reaches the two-factor area, a
// two-factor session the deny area.
func TestRedteamFragmentBehindNginx(t *testing.T) {
	app := startExpressApp(t)
	app.name = "express"
	app.need(t)
	h := newHarness(t, harnessOptions{policyYAML: redteamLooseDefaultPolicy, trustedProxies: []string{"127.0.0.1"}})
	addr := startSnippetNginx(t, h.srv.Listener.Addr().String(), app.addr)
	clients := realClients(t, h)
	for _, tc := range []struct {
		client realClient
		path   string
		may    map[string]bool // areas this client may see
	}{
		{clients[1], "/two#x", map[string]bool{"none": true, "public": true}},
		{clients[1], "/two#", map[string]bool{"none": true, "public": true}},
		{clients[1], "/TWO#/x", map[string]bool{"none": true, "public": true}},
		{clients[1], "/two#/../public/", map[string]bool{"none": true, "public": true}},
		{clients[2], "/deny#x", map[string]bool{"none": true, "public": true, "two": true}},
		{clients[0], "/public#/x", map[string]bool{"public": true}},
	} {
		st, _, body, err := rawGet(addr, tc.path, tc.client.cookie)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if m := areaMark.FindStringSubmatch(body); m != nil && !tc.may[m[2]] {
			t.Errorf("LEAK: %s client, GET %s HTTP/1.1 through nginx's snippet → %d from Express's %q area (keygate judged the path with \"#\" in it)",
				tc.client.name, tc.path, st, m[2])
		}
	}
}
