package activity

import (
	"strings"
	"unicode/utf8"
)

// Person is whom an event or a notice is about: the account's name, and
// where notices go. Only a confirmed address gets notices with a "This
// wasn't me" link (it locks the account, and an address nobody confirmed
// may belong to someone else).
type Person struct {
	Username      string
	Email         string
	EmailVerified bool
}

// Client is where an attempt or a change comes from: the address
// regulation counts, what the activity log shows, and the language notices
// are written in. authn.Client is this type.
type Client struct {
	IP        string
	UserAgent string
	Lang      string
}

// maxIPLen bounds a stored address: an IPv6 address with a zone fits.
const maxIPLen = 64

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

// DescribeUserAgent turns a User-Agent into "Browser on OS" for lists and
// notifications; unknown parts say so.
func DescribeUserAgent(ua string) string {
	browser := "Unknown browser"
	switch {
	case strings.Contains(ua, "Edg/"):
		browser = "Edge"
	case strings.Contains(ua, "OPR/"):
		browser = "Opera"
	case strings.Contains(ua, "Firefox/"):
		browser = "Firefox"
	case strings.Contains(ua, "Chrome/") || strings.Contains(ua, "Chromium/") || strings.Contains(ua, "HeadlessChrome/"):
		browser = "Chrome"
	case strings.Contains(ua, "Safari/"):
		browser = "Safari"
	case strings.HasPrefix(ua, "curl/"):
		browser = "curl"
	}
	os := "unknown system"
	switch {
	case strings.Contains(ua, "Android"):
		os = "Android"
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad"):
		os = "iOS"
	case strings.Contains(ua, "Windows"):
		os = "Windows"
	case strings.Contains(ua, "Mac OS X") || strings.Contains(ua, "Macintosh"):
		os = "macOS"
	case strings.Contains(ua, "CrOS"):
		os = "ChromeOS"
	case strings.Contains(ua, "Linux"):
		os = "Linux"
	}
	return browser + " on " + os
}
