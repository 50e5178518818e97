package web

import (
	"bytes"
	"context"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// A security key enrolled before a backup signs in after a restore: the
// credential, its counter and the user handle all come back.
func TestBrowserSecurityKeyWorksAfterBackupAndRestore(t *testing.T) {
	b := browser.Get(t)
	h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
	p := b.NewPage(t, h.origin+"/public")
	p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Transport: "usb"})
	h.enrolInBrowser(t, p, testUser, testPassword, "security_key")

	var backup bytes.Buffer
	key := bytes.Repeat([]byte{9}, 32)
	if err := h.kv.Backup(&backup, key); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(backup.Bytes(), []byte("alice@example.com")) {
		t.Fatal("the backup holds an email address in plain text")
	}
	h.close()
	restored := filepath.Join(t.TempDir(), "restored")
	if err := badgerstore.Restore(badgerstore.Options{Path: restored}, &backup, key); err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t, harnessOptions{policyYAML: browserPolicy, dir: restored})
	creds, err := h2.mfa.Credentials(context.Background(), testUser)
	if err != nil || len(creds) != 1 {
		t.Fatalf("restored credentials: %v %v", err, creds)
	}
	clearCookies(t, p)
	p.Navigate(t, h2.origin+"/admin/panel")
	waitPath(t, p, "/.keygate/login")
	browserSignIn(t, p, testUser, testPassword)
	waitExact(t, p, "/.keygate/second-factor")
	p.Navigate(t, h2.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h2.origin+"/admin/panel"))
	p.Click(t, "#webauthn-start")
	waitExact(t, p, "/admin/panel")
	if u := h2.up.last(t).Header.Get("Remote-User"); u != testUser {
		t.Fatalf("after restore the upstream saw %q", u)
	}
}
