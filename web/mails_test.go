package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod/lib/proto"
	"github.com/keygate/keygate/authn/mail/mailpittest"
)

// The portal's language (the switcher and its cookie) and the mails that
// tell people about their account, read from a real Mailpit in English and
// Russian.

// switchLanguage clicks the switcher's link for tag on the page at from
// and returns the answer (a 303 back to the page).
func (h *harness) switchLanguage(c *http.Client, tag, from string) *http.Response {
	h.t.Helper()
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/.keygate/lang/"+tag, "", setHeader("Referer", from))
	return resp
}

func TestLanguageSwitcherAndCookie(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	ruBrowser := setHeader("Accept-Language", "ru-RU,ru;q=0.9")
	login := "http://app.example.com/.keygate/login?rd=" + "http%3A%2F%2Fapp.example.com%2Fx"

	// No choice yet: Accept-Language decides, and the switcher offers
	// every language, each named in itself, the page's own marked.
	_, body := h.do(c, http.MethodGet, login, "", ruBrowser)
	for _, want := range []string{`<html lang="ru">`, `<nav class="langs" aria-label="Язык">`,
		`<a href="/.keygate/lang/en" lang="en" hreflang="en">English</a>`,
		`<a href="/.keygate/lang/ru" lang="ru" hreflang="ru" aria-current="true">Русский</a>`} {
		if !strings.Contains(body, want) {
			t.Fatalf("login page lacks %q", want)
		}
	}

	// Choosing English: a cookie for a year, back to the same page.
	resp := h.switchLanguage(c, "en", login)
	ck := findCookie(resp, langCookie)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.keygate/login?rd=http%3A%2F%2Fapp.example.com%2Fx" ||
		ck == nil || ck.Value != "en" || ck.MaxAge < 364*24*3600 || !ck.HttpOnly || ck.Domain != "example.com" {
		t.Fatalf("switch: %d %q %+v", resp.StatusCode, resp.Header.Get("Location"), ck)
	}
	// Every later page is English though the browser asks for Russian:
	// the portal's, the API's messages, and the gate's own pages.
	if _, body := h.do(c, http.MethodGet, login, "", ruBrowser); !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "Sign in to continue") {
		t.Fatal("the chosen language does not stand")
	}
	if _, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/login", `{"username":"alice","password":"wrong-password-1"}`,
		ruBrowser, setHeader("Content-Type", "application/json")); !strings.Contains(body, "password") {
		t.Fatalf("API message: %s", body)
	}
	h.login(c, testUser, testPassword, "")
	if resp, body := h.do(c, http.MethodGet, "http://app.example.com/closed/x", "", ruBrowser); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `<html lang="en">`) {
		t.Fatalf("gate's page: %d %q", resp.StatusCode, body)
	}
	// The app still gets the browser's own Accept-Language, and never the
	// cookie.
	if resp, _ := h.do(c, http.MethodGet, "http://app.example.com/x", "", ruBrowser); resp.StatusCode != http.StatusOK {
		t.Fatalf("app: %d", resp.StatusCode)
	}
	up := h.up.last(t)
	if up.Header.Get("Accept-Language") != "ru-RU,ru;q=0.9" || strings.Contains(up.Header.Get("Cookie"), langCookie) {
		t.Fatalf("upstream saw Accept-Language %q, Cookie %q", up.Header.Get("Accept-Language"), up.Header.Get("Cookie"))
	}

	// Back to Russian from the gate's page: back to that page.
	if resp := h.switchLanguage(c, "ru", "http://app.example.com/closed/x"); resp.Header.Get("Location") != "/closed/x" {
		t.Fatalf("back to %q", resp.Header.Get("Location"))
	}
	if _, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/", "", setHeader("Accept-Language", "en")); !strings.Contains(body, `<html lang="ru">`) {
		t.Fatal("Russian chosen, English page")
	}

	// Bad input: an unknown language is a 404 that sets nothing; a
	// Referer elsewhere, or a page with no GET, goes home, never away.
	resp, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/lang/xx", "")
	if resp.StatusCode != http.StatusNotFound || findCookie(resp, langCookie) != nil || !strings.Contains(body, `<html lang="ru">`) {
		t.Fatalf("unknown language: %d %v", resp.StatusCode, resp.Cookies())
	}
	for _, ref := range []string{"", "https://evil.example.net/.keygate/login", "http://app.example.com//evil.example.net/x",
		"http://app.example.com/.keygate/settings/totp", "http://app.example.com/.keygate/lang/en", "javascript:alert(1)", "http://app.example.com\\evil.example.net"} {
		if resp := h.switchLanguage(c, "en", ref); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.keygate/" {
			t.Errorf("Referer %q: %d to %q", ref, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// Escaped backslashes stay a path on this host.
	if resp := h.switchLanguage(c, "en", `http://app.example.com/%5C%5Cevil.example.net`); resp.Header.Get("Location") != "/%5C%5Cevil.example.net" {
		t.Errorf("escaped backslashes: to %q", resp.Header.Get("Location"))
	}
	// A cookie naming no language is ignored.
	other := h.client()
	_, body = h.do(other, http.MethodGet, login, "", ruBrowser, setHeader("Cookie", langCookie+"=zz"))
	if !strings.Contains(body, `<html lang="ru">`) {
		t.Fatal("a bogus language cookie overrode Accept-Language")
	}
}

func findCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name || c.Name == hostPrefix+name {
			return c
		}
	}
	return nil
}

// noticeCase is one language's walk through the notices.
type noticeCase struct {
	lang    string
	zone    string // the browser's time zone
	months  []string
	words   map[string]string // what each kind's subject says, and the facts' labels
	browser string            // Firefox on Linux, in the language
}

var noticeCases = []noticeCase{
	{lang: "en", zone: "America/New_York",
		months: []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
		words: map[string]string{"new_sign_in": "New sign-in to your keygate account", "recovery_codes": "new recovery codes were created",
			"factor_added": "a second factor was added (Phone)", "recovery_used": "A recovery code was used to sign in to keygate",
			"when": "When", "ip": "IP address", "browser": "Browser", "link": "This wasn't me", "security": "Your security page"},
		browser: "Firefox on Linux"},
	{lang: "ru", zone: "Europe/Moscow",
		months: []string{"января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"},
		words: map[string]string{"new_sign_in": "Новый вход в учётную запись keygate", "recovery_codes": "созданы новые коды восстановления",
			"factor_added": "добавлен второй фактор (Phone)", "recovery_used": "Для входа в keygate использован код восстановления",
			"when": "Когда", "ip": "IP-адрес", "browser": "Браузер", "link": "Это был не я", "security": "Страница безопасности"},
		browser: "Firefox на Linux"},
}

// Every kind of notice, caused through the portal and its API, read from
// Mailpit in English and Russian: the language the person chose (kept
// across a later sign-in from an English browser), the time of the event
// in the person's zone and near now, where it came from, and absolute
// links that work.
func TestNoticeMailsReadRight(t *testing.T) {
	mp := mailpittest.Start(t)
	for _, tc := range noticeCases {
		t.Run(tc.lang, func(t *testing.T) {
			h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n", mail: smtpTo(t, mp.SMTPHost, mp.SMTPPort),
				trustedProxies: []string{"127.0.0.1"}})
			const addr = "alice@example.com"
			mp.DeleteAll()
			owner := h.client()
			browser := []reqOpt{setHeader("Accept-Language", "en-US,en;q=0.8")}
			if tc.lang == "ru" {
				// Chosen with the switcher on the sign-in page; the
				// browser itself asks for English throughout.
				if resp := h.switchLanguage(owner, "ru", "http://app.example.com/.keygate/login"); resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("switch: %d", resp.StatusCode)
				}
			}
			signIn := func(c *http.Client, ip, ua, zone string) {
				t.Helper()
				b, _ := json.Marshal(map[string]string{"username": testUser, "password": testPassword, "tz": zone})
				opts := append([]reqOpt{setHeader("Content-Type", "application/json")}, append(from(ip, ua), browser...)...)
				if resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/login", string(b), opts...); resp.StatusCode != http.StatusOK {
					t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
				}
			}

			// 1. A new sign-in.
			signIn(owner, "198.51.100.7", firefoxLinux, tc.zone)
			m := waitNotice(t, mp, addr, tc.words["new_sign_in"])
			h.checkNotice(t, mp, m, tc, "198.51.100.7", tc.browser, tc.zone)

			// 2. Security changes: recovery codes, an app; they name the
			// session's browser and address.
			h.redeemLink(owner, testUser)
			resp, out := h.postJSON(owner, "/.keygate/api/factors/recovery/generate", nil)
			codes, _ := out["codes"].([]any)
			if resp.StatusCode != http.StatusOK || len(codes) == 0 {
				t.Fatalf("recovery codes: %d %v", resp.StatusCode, out)
			}
			m = waitNotice(t, mp, addr, tc.words["recovery_codes"])
			h.checkNotice(t, mp, m, tc, "198.51.100.7", tc.browser, tc.zone)
			h.addTOTP(owner, "Phone")
			m = waitNotice(t, mp, addr, tc.words["factor_added"])
			h.checkNotice(t, mp, m, tc, "198.51.100.7", tc.browser, tc.zone)

			// 3. Another browser, which says English and names another
			// zone: a new sign-in, written in the person's language (kept
			// from the first sign-in), then a recovery code used.
			h.clock.Add(3 * time.Minute)
			other := h.client()
			signIn(other, "203.0.113.44", safariMac, "Asia/Tokyo")
			m = waitNotice(t, mp, addr, tc.words["new_sign_in"])
			mac := strings.Replace(strings.Replace(tc.browser, "Firefox", "Safari", 1), "Linux", "macOS", 1)
			// Its notice is written as the account was before it: the
			// browser's zone is kept from this sign-in on.
			h.checkNotice(t, mp, m, tc, "203.0.113.44", mac, tc.zone)
			resp, body := h.do(other, http.MethodPost, "http://app.example.com/.keygate/api/factors/recovery/verify", `{"code":"`+codes[0].(string)+`"}`,
				append([]reqOpt{setHeader("Content-Type", "application/json")}, append(from("203.0.113.44", safariMac), browser...)...)...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("recovery code: %d %s", resp.StatusCode, body)
			}
			m = waitNotice(t, mp, addr, tc.words["recovery_used"])
			h.checkNotice(t, mp, m, tc, "203.0.113.44", mac, "Asia/Tokyo")
		})
	}
}

// waitNotice waits for the mail to addr whose subject contains subject,
// passing over others (the codes mailed on the way).
func waitNotice(t *testing.T, mp *mailpittest.Server, addr, subject string) mailpittest.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		m := mp.WaitFor(addr, time.Until(deadline))
		if strings.Contains(m.Subject, subject) {
			return m
		}
		seen = append(seen, m.Subject)
	}
	t.Fatalf("no mail %q to %s; saw %q", subject, addr, seen)
	return mailpittest.Message{}
}

var whenRe = regexp.MustCompile(`(?m)^[^:\n]+: (\d{1,2}) (\S+) (\d{4}), (\d\d):(\d\d) (?:\(([A-Za-z_/]+), UTC([+-]\d\d:\d\d)\)|UTC)$`)

// checkNotice checks one notice: its language (header, HTML, words), its
// time (the person's zone, the harness clock, near now, never year 1),
// where it came from, and its links (absolute, on the configured portal
// URL, working).
func (h *harness) checkNotice(t *testing.T, mp *mailpittest.Server, m mailpittest.Message, tc noticeCase, ip, browser, zone string) {
	t.Helper()
	full := mp.Message(m.ID)
	text := strings.ReplaceAll(full.Text, "\r\n", "\n")
	if lang := mp.Headers(m.ID)["Content-Language"]; len(lang) != 1 || lang[0] != tc.lang {
		t.Errorf("%s: Content-Language %v", m.Subject, lang)
	}
	if !strings.Contains(full.HTML, `<div lang="`+tc.lang+`">`) {
		t.Errorf("%s: HTML without lang", m.Subject)
	}
	for _, w := range []string{tc.words["when"] + ": ", tc.words["ip"] + ": " + ip, tc.words["link"]} {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", m.Subject, w, text)
		}
	}
	if browser != "" && !strings.Contains(text, tc.words["browser"]+": "+browser) {
		t.Errorf("%s: browser is not %q:\n%s", m.Subject, browser, text)
	}
	if strings.Contains(text, "0001") || strings.ContainsAny(m.Subject+text, "{}%") {
		t.Errorf("%s: year 1 or an unfilled placeholder:\n%s", m.Subject, text)
	}
	// When: in the person's zone, at the harness clock's minute, which is
	// real time.
	w := whenRe.FindStringSubmatch(text)
	if w == nil || !strings.HasPrefix(w[0], tc.words["when"]+": ") {
		t.Fatalf("%s: no time in %q", m.Subject, text)
	}
	if w[6] != zone {
		t.Errorf("%s: zone %q, want %s", m.Subject, w[6], zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	day, _ := strconv.Atoi(w[1])
	month := slices.Index(tc.months, w[2]) + 1
	year, _ := strconv.Atoi(w[3])
	hour, _ := strconv.Atoi(w[4])
	minute, _ := strconv.Atoi(w[5])
	at := time.Date(year, time.Month(month), day, hour, minute, 0, 0, loc)
	now := h.clock.Now()
	if month == 0 || now.Sub(at) < 0 || now.Sub(at) > 5*time.Minute || w[7] != now.In(loc).Format("-07:00") {
		t.Errorf("%s: says %s (%s), the event was at %s", m.Subject, at, w[0], now)
	}
	if d := time.Since(at); d < -5*time.Minute || d > 10*time.Minute { // the test moves the clock 3 minutes on
		t.Errorf("%s: %s is not near now", m.Subject, at)
	}
	// Links: absolute, on the portal URL, and they work.
	notMe := regexp.MustCompile(regexp.QuoteMeta(h.origin) + `/\.keygate/not-me/[0-9a-f]{64}`).FindString(text)
	if notMe == "" || !strings.Contains(full.HTML, `href="`+notMe+`"`) {
		t.Fatalf("%s: no absolute not-me link on %s:\n%s", m.Subject, h.origin, text)
	}
	c := h.client()
	if resp, body := h.do(c, http.MethodGet, notMe, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/.keygate/not-me"`) {
		t.Errorf("%s: the not-me link answers %d", m.Subject, resp.StatusCode)
	}
	settings := h.origin + "/.keygate/settings"
	if !strings.Contains(text, tc.words["security"]+": "+settings) {
		t.Errorf("%s: no security page link", m.Subject)
	}
	if resp, _ := h.do(c, http.MethodGet, settings, ""); (resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther) || !strings.HasPrefix(resp.Header.Get("Location"), "/.keygate/login") {
		t.Errorf("%s: the security page link answers %d %s", m.Subject, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// In Chromium: a browser set to English switches to Russian on the
// sign-in page with the switcher, and every later page is Russian; the
// sign-in sends the browser's time zone, and the account keeps both for
// its mails. Each page is checked with axe and kept as a screenshot.
func TestBrowserLanguageSwitch(t *testing.T) {
	b := browser.Get(t)
	h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
	p := b.NewPage(t, "about:blank")
	setBrowserLanguage(t, p, "en-US,en")
	if err := (proto.EmulationSetTimezoneOverride{TimezoneID: "Asia/Yekaterinburg"}).Call(p.Rod()); err != nil {
		t.Fatal(err)
	}
	clearCookies(t, p)
	lang := func() string {
		var l string
		p.EvalInto(t, &l, `() => document.documentElement.lang`)
		return l
	}
	p.Navigate(t, h.origin+"/.keygate/login?rd="+url.QueryEscape(h.origin+"/admin/x"))
	if lang() != "en" {
		t.Fatalf("sign-in page in %q", lang())
	}
	keepScreenshot(t, p, "login-en")
	axeCheck(t, p)

	p.Click(t, `nav.langs a[hreflang="ru"]`)
	u := p.WaitURL(t, func(u string) bool { return strings.Contains(u, "/.keygate/login?rd=") })
	if lang() != "ru" || !strings.Contains(p.Text(t, "h1"), "Войдите") {
		t.Fatalf("after the switch: %s in %q, %q", u, lang(), p.Text(t, "h1"))
	}
	var tz string
	p.EvalInto(t, &tz, `() => document.getElementById("tz").value`)
	if tz != "Asia/Yekaterinburg" {
		t.Fatalf("the form would send the zone %q", tz)
	}
	keepScreenshot(t, p, "login-ru")
	axeCheck(t, p)

	browserSignIn(t, p, "bob", "violet-harbour-lantern-9")
	waitExact(t, p, "/.keygate/second-factor")
	if lang() != "ru" {
		t.Fatalf("second-factor page in %q", lang())
	}
	keepScreenshot(t, p, "second-factor-ru")
	axeCheck(t, p)
	for _, page := range []string{"settings", "sessions", "activity", ""} {
		p.Navigate(t, h.origin+"/.keygate/"+page)
		if lang() != "ru" {
			t.Fatalf("/.keygate/%s in %q", page, lang())
		}
		keepScreenshot(t, p, "page-"+page+"-ru")
		axeCheck(t, p)
	}
	u2, err := h.users.Get(context.Background(), "bob")
	if err != nil || u2.Lang != "ru" || u2.TimeZone != "Asia/Yekaterinburg" {
		t.Fatalf("the account keeps %q %q (%v)", u2.Lang, u2.TimeZone, err)
	}

	// And back to English from the security page, which stays.
	p.Navigate(t, h.origin+"/.keygate/settings")
	p.Click(t, `nav.langs a[hreflang="en"]`)
	p.WaitURL(t, func(u string) bool { return strings.HasSuffix(u, "/.keygate/settings") })
	for deadline := time.Now().Add(5 * time.Second); lang() != "en" && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if lang() != "en" {
		t.Fatalf("after switching back: %q", lang())
	}
	keepScreenshot(t, p, "settings-en")
}
