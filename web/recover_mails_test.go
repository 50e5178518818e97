package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail/mailpittest"
)

// Every mail of an account recovery (the code, the notice of the request
// with its cancel link, and the notices that it was cancelled, approved by
// an administrator and completed) read from a real Mailpit in English and
// Russian: the person's language, times in the person's zone, where it was
// asked from, and absolute links that work.

// recoverWords are what each recovery mail says in one language.
var recoverWords = map[string]struct {
	code, request, cancelLink, ifYou, cancelled, approved, completed string
}{
	"en": {code: "code to recover your account", request: "Account recovery requested for your keygate account",
		cancelLink: "Cancel the account recovery", ifYou: "wait, then sign in again",
		cancelled: "the account recovery was cancelled", approved: "an administrator approved the account recovery",
		completed: "the account was recovered"},
	"ru": {code: "для восстановления учётной записи", request: "Запрошено восстановление учётной записи keygate",
		cancelLink: "Отменить восстановление учётной записи", ifYou: "дождитесь этого времени",
		cancelled: "восстановление учётной записи отменено", approved: "администратор одобрил восстановление",
		completed: "учётная запись восстановлена"},
}

var cancelLinkRe = regexp.MustCompile(`/\.keygate/recover/cancel/[A-Za-z0-9_-]{43}`)

// recoverAPI posts body to the recovery API as the person's browser does
// (from ip, in Firefox on Linux, asking for English: the language chosen
// on the portal must win).
func (h *harness) recoverAPI(c *http.Client, path, ip string, body any) (*http.Response, map[string]any) {
	h.t.Helper()
	b, _ := json.Marshal(body)
	opts := append([]reqOpt{setHeader("Content-Type", "application/json"), setHeader("Accept", "application/json"),
		setHeader("Accept-Language", "en-US,en;q=0.8")}, from(ip, firefoxLinux)...)
	resp, raw := h.do(c, http.MethodPost, "http://app.example.com"+path, string(b), opts...)
	out := map[string]any{}
	_ = json.Unmarshal([]byte(raw), &out)
	return resp, out
}

// recoveryCodeMail asks for a recovery code and reads it from Mailpit,
// checking the mail's language.
func (h *harness) recoveryCodeMail(t *testing.T, mp *mailpittest.Server, c *http.Client, tc noticeCase, ip string) string {
	t.Helper()
	if resp, out := h.recoverAPI(c, "/.keygate/api/recovery/send", ip, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("send a recovery code: %d %v", resp.StatusCode, out)
	}
	m := waitNotice(t, mp, "alice@example.com", recoverWords[tc.lang].code)
	if lang := mp.Headers(m.ID)["Content-Language"]; len(lang) != 1 || lang[0] != tc.lang {
		t.Errorf("recovery code mail: Content-Language %v, want %s", lang, tc.lang)
	}
	code := codeRe.FindString(mp.Message(m.ID).Text)
	if code == "" {
		t.Fatalf("no code in %q", m.Subject)
	}
	return code
}

// checkRecoveryRequest checks the notice of a new request: language, the
// time asked and the time it can be completed in the person's zone, where
// it was asked from, and the absolute cancel link (which opens the page
// that asks to confirm). It returns the link.
func (h *harness) checkRecoveryRequest(t *testing.T, mp *mailpittest.Server, tc noticeCase, ip, zone string, readyAt time.Time) string {
	t.Helper()
	w := recoverWords[tc.lang]
	m := waitNotice(t, mp, "alice@example.com", w.request)
	full := mp.Message(m.ID)
	text := strings.ReplaceAll(full.Text, "\r\n", "\n")
	if lang := mp.Headers(m.ID)["Content-Language"]; len(lang) != 1 || lang[0] != tc.lang || !strings.Contains(full.HTML, `<div lang="`+tc.lang+`">`) {
		t.Errorf("request notice: Content-Language %v", lang)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	inZone := func(at time.Time) string {
		lt := at.In(loc)
		return fmt.Sprintf("%d %s %d, %s (%s, UTC%s)", lt.Day(), tc.months[lt.Month()-1], lt.Year(), lt.Format("15:04"), zone, lt.Format("-07:00"))
	}
	for _, want := range []string{
		tc.words["when"] + ": " + inZone(h.clock.Now()), // asked now, by the harness clock
		inZone(readyAt), // from when it can be completed
		tc.words["ip"] + ": " + ip, tc.words["browser"] + ": " + tc.browser, w.ifYou, w.cancelLink + ":\n" + h.origin + "/.keygate/recover/cancel/",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("request notice lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "0001") || strings.ContainsAny(m.Subject+text, "{}%") || strings.Contains(text, "/.keygate/not-me/") {
		t.Errorf("request notice: year 1, a placeholder or a not-me link:\n%s", text)
	}
	path := cancelLinkRe.FindString(text)
	link := h.origin + path
	if path == "" || !strings.Contains(text, link) || !strings.Contains(full.HTML, `href="`+link+`"`) {
		t.Fatalf("request notice: no absolute cancel link on %s:\n%s", h.origin, text)
	}
	// The link works: it opens the page that asks to confirm (and changes
	// nothing by itself: mail scanners open links).
	if resp, body := h.do(h.client(), http.MethodGet, link, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/.keygate/recover/cancel"`) {
		t.Fatalf("the cancel link answers %d", resp.StatusCode)
	}
	if _, err := h.mfa.CheckRecoveryLink(context.Background(), path[len("/.keygate/recover/cancel/"):]); err != nil {
		t.Fatalf("opening the link used it: %v", err)
	}
	return link
}

func TestRecoveryMailsReadRight(t *testing.T) {
	mp := mailpittest.Start(t)
	for _, tc := range noticeCases {
		t.Run(tc.lang, func(t *testing.T) {
			h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n", mail: smtpTo(t, mp.SMTPHost, mp.SMTPPort),
				trustedProxies: []string{"127.0.0.1"}})
			mp.DeleteAll()
			w := recoverWords[tc.lang]
			const ip = "198.51.100.7"
			signIn := func(c *http.Client) {
				t.Helper()
				b, _ := json.Marshal(map[string]string{"username": testUser, "password": testPassword, "tz": tc.zone})
				opts := append([]reqOpt{setHeader("Content-Type", "application/json"), setHeader("Accept-Language", "en-US,en;q=0.8")}, from(ip, firefoxLinux)...)
				if resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/login", string(b), opts...); resp.StatusCode != http.StatusOK {
					t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
				}
			}
			// The person chose the language on the portal (English for
			// "en"), signed in with the zone, and has an app.
			owner := h.client()
			if resp := h.switchLanguage(owner, tc.lang, "http://app.example.com/.keygate/login"); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("switch: %d", resp.StatusCode)
			}
			signIn(owner)
			h.redeemLink(owner, testUser)
			h.addTOTP(owner, "Phone")

			// 1. The phone is lost: the code, then the request's notice.
			lost := h.client()
			h.switchLanguage(lost, tc.lang, "http://app.example.com/.keygate/login")
			signIn(lost)
			resp, out := h.recoverAPI(lost, "/.keygate/api/recovery/verify", ip, map[string]any{"code": h.recoveryCodeMail(t, mp, lost, tc, ip)})
			if resp.StatusCode != http.StatusOK || out["status"] != "waiting" {
				t.Fatalf("start: %d %v", resp.StatusCode, out)
			}
			readyAt, _ := time.Parse(time.RFC3339, out["ready_at"].(string))
			if d := readyAt.Sub(h.clock.Now()); d != 72*time.Hour {
				t.Fatalf("ready in %s", d)
			}
			link := h.checkRecoveryRequest(t, mp, tc, ip, tc.zone, readyAt)

			// 2. Cancelled with the link: the notice says so.
			if resp, body := h.postForm(h.client(), "/.keygate/recover/cancel", "token", link[strings.LastIndex(link, "/")+1:]); resp.StatusCode != http.StatusOK {
				t.Fatalf("cancel: %d %s", resp.StatusCode, body)
			}
			m := waitNotice(t, mp, "alice@example.com", w.cancelled)
			h.checkNotice(t, mp, m, tc, "127.0.0.1", "", tc.zone) // the click came straight, not through the proxy

			// 3. Asked again and approved by an administrator: the wait
			// ends now, and the person is told.
			h.clock.Add(time.Minute)
			resp, out = h.recoverAPI(lost, "/.keygate/api/recovery/verify", ip, map[string]any{"code": h.recoveryCodeMail(t, mp, lost, tc, ip)})
			if resp.StatusCode != http.StatusOK || out["status"] != "waiting" {
				t.Fatalf("second request: %d %v", resp.StatusCode, out)
			}
			readyAt, _ = time.Parse(time.RFC3339, out["ready_at"].(string))
			h.checkRecoveryRequest(t, mp, tc, ip, tc.zone, readyAt)
			if _, err := h.mfa.ApproveRecovery(context.Background(), testUser, "root"); err != nil {
				t.Fatal(err)
			}
			m = waitNotice(t, mp, "alice@example.com", w.approved)
			h.checkNotice(t, mp, m, tc, "—", "", tc.zone)

			// 4. Completed: the code again (a minute later: codes have a
			// cooldown), then a new app; every earlier factor goes, and
			// the person is told.
			h.clock.Add(time.Minute)
			resp, out = h.recoverAPI(lost, "/.keygate/api/recovery/verify", ip, map[string]any{"code": h.recoveryCodeMail(t, mp, lost, tc, ip)})
			if resp.StatusCode != http.StatusOK || out["status"] != "granted" {
				t.Fatalf("finish: %d %v", resp.StatusCode, out)
			}
			h.addTOTP(lost, "New phone")
			m = waitNotice(t, mp, "alice@example.com", w.completed)
			if !strings.Contains(m.Subject, "New phone") && !strings.Contains(mp.Message(m.ID).Text, "New phone") {
				t.Errorf("the completed notice does not name the new factor: %q", m.Subject)
			}
			h.checkNotice(t, mp, m, tc, ip, tc.browser, tc.zone)
		})
	}
}
