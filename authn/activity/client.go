package activity

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Person is whom an event or a notice is about: the account's name, where
// notices go and how they are written. Only a confirmed address gets
// notices with a "This wasn't me" link (it locks the account, and an
// address nobody confirmed may belong to someone else).
type Person struct {
	Username      string
	Email         string
	EmailVerified bool
	// Lang is the language the person chose on the portal when they last
	// signed in ("" = not known); notices are written in it.
	Lang string
	// TimeZone is the IANA zone the person's browser reported at sign-in
	// ("" = not known: notices say UTC); see TimeZone.
	TimeZone string
}

// Client is where an attempt or a change comes from: the address
// regulation counts, what the activity log shows, and the language notices
// are written in. authn.Client is this type.
type Client struct {
	IP        string
	UserAgent string
	Lang      string
	// LangChosen: the person picked Lang on the portal (its language
	// switcher), rather than the browser saying what it prefers. A chosen
	// language is remembered over an earlier one; a browser's only when
	// none is remembered yet.
	LangChosen bool
	// TimeZone is the IANA zone the browser says it is in (sent with the
	// sign-in form); it is a claim of the client, checked by TimeZone
	// before anything keeps or uses it.
	TimeZone string
}

// maxIPLen bounds a stored address: an IPv6 address with a zone fits.
const maxIPLen = 64

// maxTimeZoneLen bounds a zone name; the longest IANA name is about 32
// bytes ("America/Argentina/ComodRivadavia").
const maxTimeZoneLen = 64

// TimeZone returns name when it is an IANA time zone this machine knows
// ("Europe/Berlin", "UTC"), else "". A browser sends it, so it is checked
// before it is kept or used: "Local" (the server's own zone, not the
// person's), relative paths, and anything time.LoadLocation refuses are
// not zones.
func TimeZone(name string) string {
	if name == "" || len(name) > maxTimeZoneLen || name == "Local" || strings.HasPrefix(name, "/") {
		return ""
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_-+", r)) {
			return ""
		}
	}
	if _, err := time.LoadLocation(name); err != nil {
		return ""
	}
	return name
}

// Clip makes client-supplied text valid UTF-8 and at most n bytes, cut on
// a character boundary, so a huge User-Agent cannot bloat the log, memory
// or records (authn's sessions and devices use it too).
func Clip(v string, n int) string {
	v = strings.ToValidUTF8(v, "")
	if len(v) <= n {
		return v
	}
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n]
}

// Agent is a browser and its operating system as read from a User-Agent
// ("" = not recognised).
type Agent struct {
	Browser string
	OS      string
}

// ParseUserAgent reads the browser and the system from a User-Agent. The
// order of the tests matters: Edge and Opera also say Chrome, Chrome also
// says Safari, Android also says Linux.
func ParseUserAgent(ua string) Agent {
	var a Agent
	switch {
	case strings.Contains(ua, "Edg/"):
		a.Browser = "Edge"
	case strings.Contains(ua, "OPR/"):
		a.Browser = "Opera"
	case strings.Contains(ua, "Firefox/"):
		a.Browser = "Firefox"
	case strings.Contains(ua, "Chrome/") || strings.Contains(ua, "Chromium/") || strings.Contains(ua, "HeadlessChrome/"):
		a.Browser = "Chrome"
	case strings.Contains(ua, "Safari/"):
		a.Browser = "Safari"
	case strings.HasPrefix(ua, "curl/"):
		a.Browser = "curl"
	}
	switch {
	case strings.Contains(ua, "Android"):
		a.OS = "Android"
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad"):
		a.OS = "iOS"
	case strings.Contains(ua, "Windows"):
		a.OS = "Windows"
	case strings.Contains(ua, "Mac OS X") || strings.Contains(ua, "Macintosh"):
		a.OS = "macOS"
	case strings.Contains(ua, "CrOS"):
		a.OS = "ChromeOS"
	case strings.Contains(ua, "Linux"):
		a.OS = "Linux"
	}
	return a
}

// agentWords are the words around a browser's name: [unknown browser,
// unknown system, "on"], per language.
var agentWords = map[string][3]string{
	"en": {"Unknown browser", "unknown system", "on"},
	"ru": {"Неизвестный браузер", "неизвестная система", "на"},
}

// Describe says "Browser on OS" in lang (English when lang has no words).
func (a Agent) Describe(lang string) string {
	w, ok := agentWords[lang]
	if !ok {
		w = agentWords["en"]
	}
	browser, os := a.Browser, a.OS
	if browser == "" {
		browser = w[0]
	}
	if os == "" {
		os = w[1]
	}
	return browser + " " + w[2] + " " + os
}

// DescribeUserAgent turns a User-Agent into "Browser on OS" (English) for
// lists and the activity log; unknown parts say so.
func DescribeUserAgent(ua string) string { return ParseUserAgent(ua).Describe("en") }
