package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors/sms/kanneltest"
)

// call sends a JSON body (nil = none) and returns the status and the
// decoded answer, whatever the status.
func (p *portal) call(method, target string, in any) (int, map[string]any) {
	p.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.base+target, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

var smsCode = regexp.MustCompile(`\b(\d{6})\b`)

// codeIn reads the code out of a text the fake SMSC received for to.
func codeIn(t *testing.T, m kanneltest.Message, to string) string {
	t.Helper()
	if strings.TrimPrefix(m.To, "+") != strings.TrimPrefix(to, "+") {
		t.Fatalf("text went to %q, want %q", m.To, to)
	}
	c := smsCode.FindStringSubmatch(m.Text)
	if c == nil {
		t.Fatalf("no code in the text %q", m.Text)
	}
	return c[1]
}

// The SMS factor end to end, through the real binary and real Kannel
// (bearerbox, smsbox and kannel-extras' fake SMSC): a person enrols a
// phone number (confirmed by a code the SMSC received) with an admin's
// link, signs in again with the password and a code by SMS, and reaches an
// area whose rule asks for SMS. A wrong number format, a wrong code and a
// replayed code are refused and change nothing.
func TestSMSSignInThroughKannel(t *testing.T) {
	k := kanneltest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "storage.key")
	pwFile := filepath.Join(dir, "kannel.pw")
	for f, v := range map[string]string{keyFile: strings.Repeat("ab", 32) + "\n", pwFile: k.Password + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "keygate.yaml")
	yml := fmt.Sprintf(`server:
  listen: %q
  admin_socket: %q
storage:
  path: %q
  encryption_key_file: %q
policy:
  default: bypass
  rules:
    - name: sms-area
      paths: ["/secret/**"]
      action: two_factor
      factors: [sms]
upstreams:
  - host: localhost
    url: %s
sms:
  provider: kannel
  kannel:
    url: %q
    username: %q
    password_file: %q
`, addr, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "data"), keyFile, up.URL, k.SendURL, k.Username, pwFile)
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygateBin(t), "serve", "--config", cfgFile)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("keygate's log:\n%s", stderr.String())
		}
	}()
	waitFor(t, "keygate to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })
	base := "http://localhost:" + addr[strings.LastIndex(addr, ":")+1:]

	const password = "violet-harbour-lantern-9"
	if _, errOut, rc := run(t, password+"\n", "user", "add", "alice", "--email", "alice@example.com", "--password-stdin", "--config", cfgFile); rc != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	out, errOut, rc := run(t, "", "user", "enroll-link", "alice", "--config", cfgFile)
	if rc != 0 {
		t.Fatalf("enroll-link: %s", errOut)
	}
	p := newPortal(t, base)
	p.post("/.keygate/api/login", map[string]string{"username": "alice", "password": password})
	// A password alone never enrols: refused before the admin's link.
	if st, ans := p.call(http.MethodPost, "/.keygate/api/factors/sms/enroll/begin", map[string]string{"address": "+447700900123"}); st != http.StatusForbidden {
		t.Fatalf("enrolment with a password only: %d %v", st, ans)
	}
	k.Quiet(t, 300*time.Millisecond)
	p.post("/.keygate/api/enroll-link", map[string]string{"token": path.Base(strings.Fields(out)[0])})

	// Numbers that are not E.164: refused with a clear error, nothing sent.
	for _, bad := range []string{"07700 900123", "+44", "+44770090012345678", "+44 7700 9001x3", "tel:+447700900123", ""} {
		st, ans := p.call(http.MethodPost, "/.keygate/api/factors/sms/enroll/begin", map[string]string{"address": bad})
		if st != http.StatusBadRequest || ans["error"] != "bad_address" || ans["message"] == "" {
			t.Errorf("number %q: %d %v, want 400 bad_address", bad, st, ans)
		}
	}
	k.Quiet(t, 300*time.Millisecond)

	const phone = "+447700900123"
	begin := p.post("/.keygate/api/factors/sms/enroll/begin", map[string]string{"address": phone})
	id, _ := begin["id"].(string)
	if begin["status"] != "sent" || id == "" || strings.Contains(fmt.Sprint(begin["to"]), "900123") {
		t.Fatalf("enrolment began with %v (want sent, an id, the number masked)", begin)
	}
	code := codeIn(t, k.Next(t, 15*time.Second), phone)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if st, ans := p.call(http.MethodPost, "/.keygate/api/factors/sms/enroll/finish", map[string]string{"id": id, "code": wrong}); st != http.StatusUnauthorized || ans["error"] != "wrong_code" {
		t.Fatalf("a wrong confirmation code: %d %v", st, ans)
	}
	if _, list := p.call(http.MethodGet, "/.keygate/api/factors", nil); strings.Contains(fmt.Sprint(list), `sms`) {
		t.Fatalf("a number was stored before it was confirmed: %v", list)
	}
	p.post("/.keygate/api/factors/sms/enroll/finish", map[string]string{"id": id, "code": code, "name": "my phone"})
	_, list := p.call(http.MethodGet, "/.keygate/api/factors", nil)
	if s := fmt.Sprint(list); !strings.Contains(s, "kind:sms") || strings.Contains(s, "900123") {
		t.Fatalf("factors after confirming: %v (want the sms credential, number masked)", list)
	}

	// A new sign-in: the password, then a code by SMS.
	p.post("/.keygate/api/logout", map[string]bool{"everywhere": false})
	p.post("/.keygate/api/login", map[string]string{"username": "alice", "password": password})
	if st, _ := p.call(http.MethodGet, "/secret/x", nil); st == http.StatusOK {
		t.Fatal("the SMS area answered before the second factor")
	}
	sent := p.post("/.keygate/api/factors/sms/begin", nil)
	if sent["status"] != "sent" || strings.Contains(fmt.Sprint(sent["to"]), "900123") {
		t.Fatalf("sign-in code: %v", sent)
	}
	code = codeIn(t, k.Next(t, 15*time.Second), phone)
	p.post("/.keygate/api/factors/sms/verify", map[string]string{"code": code})
	resp, err := p.hc.Get(base + "/secret/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "app:/secret/x" {
		t.Fatalf("the SMS area after the code: %d %q", resp.StatusCode, body)
	}
	// The code worked once.
	if st, ans := p.call(http.MethodPost, "/.keygate/api/factors/sms/verify", map[string]string{"code": code}); st == http.StatusOK {
		t.Fatalf("a used code was accepted again: %v", ans)
	}
}
